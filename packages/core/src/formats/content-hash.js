// Plain JavaScript (JSDoc-typed) so that worker threads load it as it is, from the sources as
// from dist, with no TypeScript loader: see storage/offload-worker.js.

import { loadXXH128 } from "#platform/xxh128";

/**
 * The content hash dcpjs records per item (`StorageInfo.contentHash`): XXH3-128 (on Node.js
 * `xxhash-addon`'s native build, in browsers — and where the addon does not load — hash-wasm's
 * WebAssembly one: the same digest; the choice is in docs/benchmarks.md, "The content hash"), its
 * canonical 16 bytes as 32 lowercase hex digits. An incremental save compares it with its base's
 * to tell an unchanged item without reading the base.
 */
export const CONTENT_HASH_ALGORITHM = "xxh3-128";

/** @type {import("../platform/xxh128-wasm.js").XXH128 | undefined} */
let hasher;
/** @type {Promise<void> | undefined} */
let loading;

/**
 * Loads this thread's hasher (`#platform/xxh128`: the native addon on Node.js, else hash-wasm's
 * WebAssembly module, compiled once per thread), on first use — a load, which records no hash,
 * never pays for it; later calls return the same promise.
 *
 * @returns {Promise<void>} settled once {@link contentHashOf} answers.
 */
export function loadContentHasher() {
  loading ??= loadXXH128().then((h) => {
    hasher = h;
  });
  return loading;
}

/**
 * The content hash of some bytes, on this thread — undefined until {@link loadContentHasher} has
 * settled (the writer awaits it before it frames any item).
 *
 * @param {Uint8Array} bytes - the bytes (on an `ArrayBuffer` or a `SharedArrayBuffer`).
 * @returns {string | undefined} 32 lowercase hex digits.
 */
export function contentHashOf(bytes) {
  return hasher?.hex(bytes);
}

/**
 * Begins the content hash of bytes fed in pieces, on this thread — so that one pass over an item
 * can feed each block to its CRC and its hash while the block is in the cache. Undefined until
 * {@link loadContentHasher} has settled. One at a time per thread: beginning another, or calling
 * {@link contentHashOf}, ends it.
 *
 * @returns {{ readonly update: (bytes: Uint8Array) => void, readonly hex: () => string } | undefined}
 *   `update` with each piece in order, then `hex` for the 32 lowercase hex digits.
 */
export function startContentHash() {
  return hasher?.start();
}

/**
 * The content hash of some bytes, loading the hasher first if need be.
 *
 * @param {Uint8Array} bytes - the bytes.
 * @returns {Promise<string>} 32 lowercase hex digits.
 */
export async function contentHash(bytes) {
  await loadContentHasher();
  return /** @type {string} */ (contentHashOf(bytes));
}
