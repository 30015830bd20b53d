// Plain JavaScript (JSDoc-typed) so that worker threads load it as it is, from the sources as
// from dist, with no TypeScript loader: see storage/offload-worker.js.

/**
 * The content hash dcpjs records per item (`StorageInfo.contentHash`): XXH3-128 (`hash-wasm`,
 * WebAssembly, so it runs in browsers as in Node; the choice against `@node-rs/xxhash` is in
 * docs/benchmarks.md), its canonical 16 bytes as 32 lowercase hex digits. An incremental save
 * compares it with its base's to tell an unchanged item without reading the base.
 */
export const CONTENT_HASH_ALGORITHM = "xxh3-128";

/** @type {import("hash-wasm").IHasher | undefined} */
let hasher;
/** @type {Promise<void> | undefined} */
let loading;

/**
 * Loads this thread's hasher (imports `hash-wasm` and compiles the WebAssembly module once per
 * thread, on first use: a load, which records no hash, never pays for it); later calls return the
 * same promise.
 *
 * @returns {Promise<void>} settled once {@link contentHashOf} answers.
 */
export function loadContentHasher() {
  loading ??= import("hash-wasm")
    .then(({ createXXHash128 }) => createXXHash128())
    .then((h) => {
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
  if (hasher === undefined) return undefined;
  hasher.init();
  hasher.update(bytes);
  return hasher.digest("hex");
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
