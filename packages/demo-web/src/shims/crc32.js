// Interim browser stand-in for @dcpjs/core's native CRCs (@node-rs/crc32), until core's
// platform seam picks a browser CRC of its own: the same functions, table-driven in plain JS.

/** @param {number} poly - the reflected polynomial. @returns {Uint32Array} */
function table(poly) {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? poly ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
}

const CRC32 = table(0xedb88320);
const CRC32C = table(0x82f63b78);

/** @param {Uint32Array} t @param {Uint8Array | string} input @param {number | undefined} initial */
function run(t, input, initial) {
  const bytes = typeof input === "string" ? new TextEncoder().encode(input) : input;
  let c = ~(initial ?? 0) >>> 0;
  for (let i = 0; i < bytes.length; i++) c = t[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/** CRC-32 (IEEE), continuing from `initial`, as @node-rs/crc32's `crc32`. */
export const crc32 = (/** @type {Uint8Array | string} */ input, /** @type {number=} */ initial) =>
  run(CRC32, input, initial);
/** CRC-32C (Castagnoli), continuing from `initial`, as @node-rs/crc32's `crc32c`. */
export const crc32c = (/** @type {Uint8Array | string} */ input, /** @type {number=} */ initial) =>
  run(CRC32C, input, initial);
