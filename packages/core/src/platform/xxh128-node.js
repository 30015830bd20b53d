// XXH3-128 for Node.js: `xxhash-addon`'s native build of xxHash (N-API prebuilds for Linux,
// macOS and Windows on x64 and arm64), where it loads; else hash-wasm's WebAssembly one, as in
// browsers (platform/xxh128-browser.js). Both give the same digest; why the native one on Node is
// in docs/benchmarks.md ("The content hash"). Plain JavaScript, like the other modules a worker
// thread loads.
import { createRequire } from "node:module";
import { loadWasmXXH128 } from "./xxh128-wasm.js";

/**
 * Loads this thread's XXH3-128 (seed 0): the native addon, or hash-wasm's where the addon has no
 * build for this platform (its loader throws).
 *
 * @returns {Promise<import("./xxh128-wasm.js").XXH128>} the hasher's two forms.
 */
export async function loadXXH128() {
  /** @type {typeof import("xxhash-addon").XXHash128} */
  let XXHash128;
  try {
    ({ XXHash128 } = createRequire(import.meta.url)("xxhash-addon"));
  } catch {
    return loadWasmXXH128();
  }
  const running = new XXHash128(Buffer.alloc(8)); // seed 0: XXH3-128's default
  return {
    hex: (bytes) => XXHash128.hash(asBuffer(bytes)).toString("hex"),
    start: () => {
      running.reset();
      return {
        update: (bytes) => running.update(asBuffer(bytes)),
        hex: () => running.digest().toString("hex"),
      };
    },
  };
}

/**
 * The bytes as a `Buffer`, without a copy (the addon's declared parameter type).
 *
 * @param {Uint8Array} bytes - on an `ArrayBuffer` or a `SharedArrayBuffer`.
 * @returns {Buffer}
 */
function asBuffer(bytes) {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
