// XXH3-128 by hash-wasm (WebAssembly): browsers' content hasher, and Node's where the native
// addon does not load (platform/xxh128-node.js). Plain JavaScript, like the other modules a
// worker loads.

/**
 * A thread's XXH3-128 (seed 0), its canonical 16 bytes as 32 lowercase hex digits: `hex` hashes
 * bytes at once; `start` begins a hash fed in pieces (one at a time: starting another, or calling
 * `hex`, ends it).
 *
 * @typedef {{
 *   readonly hex: (bytes: Uint8Array) => string,
 *   readonly start: () => { readonly update: (bytes: Uint8Array) => void, readonly hex: () => string },
 * }} XXH128
 */

/**
 * Loads hash-wasm's XXH3-128 (imports `hash-wasm` and compiles its WebAssembly module).
 *
 * @returns {Promise<XXH128>} the hasher's two forms.
 */
export async function loadWasmXXH128() {
  const { createXXHash128 } = await import("hash-wasm");
  const hasher = await createXXHash128();
  return {
    hex: (bytes) => {
      hasher.init();
      hasher.update(bytes);
      return hasher.digest("hex");
    },
    start: () => {
      hasher.init();
      return { update: (bytes) => void hasher.update(bytes), hex: () => hasher.digest("hex") };
    },
  };
}
