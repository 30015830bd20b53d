// Plain JavaScript (JSDoc-typed) so that worker threads load it as it is, from the sources as
// from dist, with no TypeScript loader: see storage/offload-worker.js.

/**
 * A copy of an n-d box between two row-major byte buffers, as runs: the outer dimensions are
 * iterated, and each step copies one contiguous run of `run` bytes.
 *
 * @typedef {object} StridedCopy
 * @property {number} run - bytes copied per step (the box's merged inner dimensions).
 * @property {number} srcBase - the box's first byte in the source.
 * @property {number} dstBase - the box's first byte in the destination.
 * @property {readonly number[]} counts - steps per outer dimension (empty: one run).
 * @property {readonly number[]} srcStrides - source bytes per step of each outer dimension.
 * @property {readonly number[]} dstStrides - destination bytes per step of each outer dimension.
 */

/**
 * Node's `Buffer`, whose `copy` is a native memcpy with no view object per run; absent in
 * browsers, which copy each run with `set` of a view instead.
 */
const NodeBuffer = typeof Buffer === "function" ? Buffer : undefined;

/**
 * Carries out a {@link StridedCopy}: one `set` for a single run, else a native memcpy per run
 * (`Buffer#copy` on Node.js, with no view object per run — much cheaper for short runs; `set` of
 * a view in a browser).
 *
 * @param {Uint8Array} src - the source bytes (on an `ArrayBuffer` or a `SharedArrayBuffer`).
 * @param {Uint8Array} dst - the destination bytes.
 * @param {StridedCopy} copy - what to copy where; its runs must lie inside both buffers.
 * @returns {void}
 */
export function stridedCopy(src, dst, copy) {
  const { run, counts, srcStrides, dstStrides } = copy;
  if (counts.length === 0) {
    dst.set(src.subarray(copy.srcBase, copy.srcBase + run), copy.dstBase);
    return;
  }
  const source = NodeBuffer?.from(src.buffer, src.byteOffset, src.byteLength);
  const outer = counts.length;
  // Typed as the index signatures allow; every index below is in range.
  const idx = /** @type {number[]} */ (new Array(outer).fill(0));
  const ss = /** @type {number[]} */ (srcStrides);
  const ds = /** @type {number[]} */ (dstStrides);
  const cs = /** @type {number[]} */ (counts);
  for (;;) {
    let s = copy.srcBase;
    let t = copy.dstBase;
    for (let i = 0; i < outer; i++) {
      s += /** @type {number} */ (idx[i]) * /** @type {number} */ (ss[i]);
      t += /** @type {number} */ (idx[i]) * /** @type {number} */ (ds[i]);
    }
    if (source) source.copy(dst, t, s, s + run);
    else dst.set(src.subarray(s, s + run), t);
    let j = outer - 1;
    while (j >= 0) {
      const next = /** @type {number} */ (idx[j]) + 1;
      idx[j] = next;
      if (next < /** @type {number} */ (cs[j])) break;
      idx[j] = 0;
      j--;
    }
    if (j < 0) return;
  }
}
