// CRC-32 and CRC-32C for browsers, with the signatures of `@node-rs/crc32` (the native module the
// package's `#platform/crc` import resolves to everywhere else): hash-wasm's WebAssembly CRCs.
// Why this one: docs/benchmarks.md, "CRC in the browser". Plain JavaScript, like the other
// modules a worker may load.
//
// hash-wasm offers no initial value, which running checksums need (a block's CRC continues its
// predecessor's). Its hashers save and load their state, and a CRC's state is the CRC so far
// (4 bytes, little-endian) after a 4-byte id of the hash-wasm build: a state saved after `init`,
// with the previous CRC written into it, continues from that CRC. The import checks the
// continuation on the standard check vector, so a hash-wasm whose state differs fails loudly here.
import { createCRC32 } from "hash-wasm";

/** CRC-32C's polynomial (Castagnoli), reflected; hash-wasm's default is CRC-32's (IEEE 802.3). */
const CASTAGNOLI = 0x82f63b78;

/**
 * A CRC function over one hash-wasm hasher.
 *
 * @param {import("hash-wasm").IHasher} hasher - a CRC-32 hasher (`createCRC32`).
 * @returns {(input: Uint8Array, initialState?: number | null) => number}
 */
function crcOf(hasher) {
  hasher.init();
  const state = hasher.save();
  if (state.byteLength !== 8)
    throw new Error(
      `Expected hash-wasm's CRC state to be 8 bytes (an id and the CRC), got ${state.byteLength}`,
    );
  const view = new DataView(state.buffer, state.byteOffset, state.byteLength);
  return (input, initialState) => {
    if (initialState) {
      view.setUint32(4, initialState, true);
      hasher.load(state);
    } else hasher.init();
    hasher.update(input);
    const d = hasher.digest("binary");
    return new DataView(d.buffer, d.byteOffset, 4).getUint32(0);
  };
}

const [ieee, castagnoli] = await Promise.all([createCRC32(), createCRC32(CASTAGNOLI)]);

/**
 * The CRC-32 (IEEE 802.3, zlib's) of some bytes, or of more bytes after `initialState`.
 *
 * @param {Uint8Array} input - the bytes.
 * @param {number | null} [initialState] - the CRC of the bytes before these; absent: from scratch.
 * @returns {number} the unsigned 32-bit CRC.
 */
export const crc32 = crcOf(ieee);

/**
 * The CRC-32C (Castagnoli) of some bytes, or of more bytes after `initialState`.
 *
 * @param {Uint8Array} input - the bytes.
 * @param {number | null} [initialState] - the CRC of the bytes before these; absent: from scratch.
 * @returns {number} the unsigned 32-bit CRC.
 */
export const crc32c = crcOf(castagnoli);

// The check values of both CRCs ("123456789"), computed in two pieces: the second continues the first.
const check = new TextEncoder().encode("123456789");
for (const [name, crc, expected] of /** @type {const} */ ([
  ["CRC-32", crc32, 0xcbf43926],
  ["CRC-32C", crc32c, 0xe3069283],
])) {
  const got = crc(check.subarray(4), crc(check.subarray(0, 4)));
  if (got !== expected)
    throw new Error(
      `Expected hash-wasm's ${name} to continue from a previous value (${expected}), got ${got}`,
    );
}
