// Plain JavaScript (JSDoc-typed) so that worker threads load it as it is, from the sources as
// from dist, with no TypeScript loader: see storage/offload-worker.js.
import { crc32, crc32c } from "#platform/crc";

/**
 * The running checksum of bytes at the end of each block of `blockBytes` (the last block may be
 * shorter): its last value is the checksum of all the bytes (after `previous`). What dcpjs
 * records per item (`StorageInfo.checksumBlocks`) so that a reader can verify part of an item.
 *
 * @param {"crc32" | "crc32c"} algorithm - which CRC.
 * @param {Uint8Array} bytes - the bytes (on an `ArrayBuffer` or a `SharedArrayBuffer`).
 * @param {number} blockBytes - block size (bytes), > 0; `Infinity` for one block.
 * @param {number} [previous] - the running checksum of the bytes before these; absent: from scratch.
 * @returns {number[]} one unsigned 32-bit CRC per block (one for empty bytes).
 */
export function runningChecksums(algorithm, bytes, blockBytes, previous) {
  const crc = algorithm === "crc32" ? crc32 : crc32c;
  const all = bytes;
  if (all.byteLength <= blockBytes) return [crc(all, previous)];
  /** @type {number[]} */
  const running = [];
  let state = previous;
  for (let at = 0; at < all.byteLength; at += blockBytes) {
    state = crc(all.subarray(at, Math.min(at + blockBytes, all.byteLength)), state);
    running.push(state);
  }
  return running;
}
