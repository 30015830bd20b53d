// Plain JavaScript (JSDoc-typed) so that worker threads load it as it is, from the sources as
// from dist, with no TypeScript loader: see storage/offload-worker.js.
import { crc32, crc32c } from "#platform/crc";
import { contentHashOf } from "./content-hash.js";

/**
 * The checksums and content hashes of several items laid end to end in one buffer: one CRC per
 * item, and every item's content hash (`contentHashOf`, 32 lowercase hex digits) concatenated in
 * item order — one string rather than one per item, so that a worker's answer is one short
 * message (the caller slices item `i`'s at `32 * i`).
 *
 * @typedef {{ readonly crcs: Uint32Array, readonly hashes: string }} ItemSums
 */

/**
 * The CRC and content hash of each item of a batch (a writer's small items, copied end to end
 * into one staging buffer), as dcpjs's native format records them for an item of one block
 * (`crc32`, `contentHash`). The content hasher must be loaded (`loadContentHasher`).
 *
 * @param {"crc32" | "crc32c"} algorithm - which CRC.
 * @param {Uint8Array} bytes - the items, end to end from `bytes[0]`.
 * @param {ArrayLike<number>} ends - each item's end (bytes from `bytes[0]`), ascending.
 * @returns {ItemSums} a CRC per item and their hashes, concatenated.
 * @throws Error when the hasher is not loaded yet.
 */
export function itemSums(algorithm, bytes, ends) {
  const crc = algorithm === "crc32" ? crc32 : crc32c;
  const crcs = new Uint32Array(ends.length);
  const hashes = [];
  let start = 0;
  for (let i = 0; i < ends.length; i++) {
    const end = /** @type {number} */ (ends[i]);
    const item = bytes.subarray(start, end);
    crcs[i] = crc(item);
    const hash = contentHashOf(item);
    if (hash === undefined) throw new Error("Expected the content hasher to be loaded, got none");
    hashes.push(hash);
    start = end;
  }
  return { crcs, hashes: hashes.join("") };
}
