// XXH3-128 in browsers: hash-wasm's WebAssembly build (the Node.js platform's is native, see
// platform/xxh128-node.js). Plain JavaScript, like the other modules a Web Worker loads.
import { loadWasmXXH128 } from "./xxh128-wasm.js";

/**
 * Loads this thread's XXH3-128 (seed 0): hash-wasm's.
 *
 * @returns {Promise<import("./xxh128-wasm.js").XXH128>} the hasher's two forms.
 */
export function loadXXH128() {
  return loadWasmXXH128();
}
