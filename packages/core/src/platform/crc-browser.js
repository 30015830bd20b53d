// CRC-32 and CRC-32C for browsers, with the signatures of `@node-rs/crc32` (the native module the
// package's `#platform/crc` import resolves to everywhere else): SheetJS's `crc-32`, a table-driven
// pure-JavaScript CRC that continues from a previous value (the running checksums need that) and
// loads synchronously (no WebAssembly to fetch). Why this one: docs/benchmarks.md, "CRC in the
// browser". Plain JavaScript, like the other modules a worker may load.
import CRC32 from "crc-32";
import CRC32C from "crc-32/crc32c.js";

/**
 * The CRC-32 (IEEE 802.3, zlib's) of some bytes, or of more bytes after `initialState`.
 *
 * @param {Uint8Array} input - the bytes.
 * @param {number | null} [initialState] - the CRC of the bytes before these; absent: from scratch.
 * @returns {number} the unsigned 32-bit CRC.
 */
export function crc32(input, initialState) {
  return CRC32.buf(input, initialState ?? 0) >>> 0;
}

/**
 * The CRC-32C (Castagnoli) of some bytes, or of more bytes after `initialState`.
 *
 * @param {Uint8Array} input - the bytes.
 * @param {number | null} [initialState] - the CRC of the bytes before these; absent: from scratch.
 * @returns {number} the unsigned 32-bit CRC.
 */
export function crc32c(input, initialState) {
  return CRC32C.buf(input, initialState ?? 0) >>> 0;
}
