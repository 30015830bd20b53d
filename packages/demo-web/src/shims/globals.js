// Interim browser stand-ins for the Node globals @dcpjs/core touches (`Buffer.from`/`concat`/
// `allocUnsafeSlow`/`isBuffer`, `process.emitWarning`), injected by the bundle until core's
// platform seam removes them.

class PageBuffer extends Uint8Array {
  /** @param {ArrayBufferLike | ArrayLike<number> | string} value @param {number=} offset @param {number=} length */
  static from(value, offset, length) {
    if (typeof value === "string") {
      const bytes = new TextEncoder().encode(value);
      return new PageBuffer(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    }
    if (
      value instanceof ArrayBuffer ||
      (typeof SharedArrayBuffer === "function" && value instanceof SharedArrayBuffer)
    )
      return new PageBuffer(value, offset ?? 0, length ?? value.byteLength - (offset ?? 0));
    if (ArrayBuffer.isView(value)) {
      const copy = new PageBuffer(value.byteLength);
      copy.set(new Uint8Array(value.buffer, value.byteOffset, value.byteLength));
      return copy;
    }
    return new PageBuffer(Array.from(/** @type {ArrayLike<number>} */ (value)));
  }
  /** @param {readonly Uint8Array[]} list @param {number=} total */
  static concat(list, total) {
    const out = new PageBuffer(total ?? list.reduce((n, b) => n + b.byteLength, 0));
    let at = 0;
    for (const b of list) {
      out.set(b.subarray(0, Math.max(0, Math.min(b.byteLength, out.byteLength - at))), at);
      at += b.byteLength;
    }
    return out;
  }
  /** @param {number} n */
  static allocUnsafeSlow(n) {
    return new PageBuffer(n);
  }
  /** @param {number} n */
  static allocUnsafe(n) {
    return new PageBuffer(n);
  }
  /** @param {number} n */
  static alloc(n) {
    return new PageBuffer(n);
  }
  /** @param {unknown} value */
  static isBuffer(value) {
    return value instanceof PageBuffer;
  }
  /** @param {Uint8Array} other */
  equals(other) {
    return this.byteLength === other.byteLength && this.every((b, i) => b === other[i]);
  }
  /** @param {string=} encoding */
  toString(encoding) {
    if (encoding === undefined || encoding === "utf8" || encoding === "utf-8")
      return new TextDecoder().decode(this);
    return super.toString();
  }
}

export { PageBuffer as Buffer };
export const process = {
  env: {},
  /** @param {unknown} message */
  emitWarning(message) {
    console.warn(message);
  },
};

/**
 * A page's timer id with Node's `unref()`/`ref()` (a page has no event loop to keep alive, so
 * both do nothing): what @dcpjs/core's lease renewal and staging-buffer release call.
 */
class PageTimer {
  /** @param {number} id */
  constructor(id) {
    this.id = id;
  }
  unref() {
    return this;
  }
  ref() {
    return this;
  }
  hasRef() {
    return false;
  }
  [Symbol.toPrimitive]() {
    return this.id;
  }
}

/** @param {unknown} timer */
const idOf = (timer) => (timer instanceof PageTimer ? timer.id : /** @type {number} */ (timer));

/** @param {(...args: unknown[]) => void} fn @param {number=} ms @param {...unknown} args */
function pageSetTimeout(fn, ms, ...args) {
  return new PageTimer(globalThis.setTimeout(fn, ms, ...args));
}
/** @param {(...args: unknown[]) => void} fn @param {number=} ms @param {...unknown} args */
function pageSetInterval(fn, ms, ...args) {
  return new PageTimer(globalThis.setInterval(fn, ms, ...args));
}
/** @param {unknown} timer */
function pageClearTimeout(timer) {
  globalThis.clearTimeout(idOf(timer));
}
/** @param {unknown} timer */
function pageClearInterval(timer) {
  globalThis.clearInterval(idOf(timer));
}

export {
  pageClearInterval as clearInterval,
  pageClearTimeout as clearTimeout,
  pageSetInterval as setInterval,
  pageSetTimeout as setTimeout,
};

/**
 * `SharedArrayBuffer` where the page has none (not cross-origin isolated): @dcpjs/core allocates
 * one at load time and stages into them. This stand-in allocates a plain `ArrayBuffer` and is never
 * matched by `instanceof`, so core takes every buffer for an unshared one and stays on the main
 * thread.
 */
class UnsharedArrayBuffer extends ArrayBuffer {
  static [Symbol.hasInstance]() {
    return false;
  }
}

const PageSharedArrayBuffer = globalThis.SharedArrayBuffer ?? UnsharedArrayBuffer;

export { PageSharedArrayBuffer as SharedArrayBuffer };
