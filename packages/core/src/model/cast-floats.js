// Plain JavaScript (JSDoc-typed), for worker threads as model/cast-kernels.js: the float
// encodings torch's casts go through — float32 rounding, float16 and bfloat16 bits as c10 makes
// them, the float32 nearest a 64-bit integer.

/** @typedef {import("./cast-kernels.js").ElementCodec} ElementCodec */

const TWO32 = 4294967296;
const scratch = new DataView(new ArrayBuffer(8));

/**
 * The float32 nearest a number (ties to even), as its bits.
 * @param {number} x
 * @returns {number}
 */
export function f32Bits(x) {
  scratch.setFloat32(0, x, true);
  return scratch.getUint32(0, true);
}

/**
 * Rounds a non-negative number to an integer, ties to even.
 * @param {number} m
 * @returns {number}
 */
export function rint(m) {
  const f = Math.floor(m);
  const d = m - f;
  return d > 0.5 || (d === 0.5 && f % 2 === 1) ? f + 1 : f;
}

/** float16 bits of a float32 value (round to nearest even; overflow to ±Inf), as c10's `fp16_ieee_from_fp32_value`.
 * @param {number} x
 * @returns {number}
 */
export function halfFromFloat(x) {
  const bits = f32Bits(x);
  const sign = (bits >>> 16) & 0x8000;
  const abs = bits & 0x7fffffff;
  if (abs >= 0x477ff000) return sign | 0x7c00; // ≥ 65520: rounds to Inf
  if (abs < 0x38800000) return sign | rint(Math.abs(x) * 2 ** 24); // subnormal (may round up to the first normal)
  return sign | (((abs - 0x38000000 + 0xfff + ((abs >>> 13) & 1)) >>> 13) & 0x7fff);
}

/** @type {Float32Array | undefined} every float16's value, by its bits (built on first use: 256 KiB) */
let halfValues;

/**
 * A float16's value, from a table.
 * @param {number} h - its bits.
 * @returns {number}
 */
export function halfValue(h) {
  if (!halfValues) {
    halfValues = new Float32Array(65536);
    for (let b = 0; b < 65536; b++) halfValues[b] = halfValueOf(b);
  }
  return /** @type {number} */ (halfValues[h]);
}

/**
 * A float16's value, computed.
 * @param {number} h - its bits.
 * @returns {number}
 */
function halfValueOf(h) {
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  const s = h & 0x8000 ? -1 : 1;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? Number.NaN : s * Number.POSITIVE_INFINITY;
  return s * (1024 + m) * 2 ** (e - 25);
}

/** bfloat16 bits of a float32 value (round to nearest even), as c10's `round_to_nearest_even`.
 * @param {number} x
 * @returns {number}
 */
export function bf16FromFloat(x) {
  const bits = f32Bits(x);
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/**
 * A bfloat16's value (exact: the top half of a float32).
 * @param {number} b - its bits.
 * @returns {number}
 */
export function bf16Value(b) {
  scratch.setUint32(0, b << 16, true);
  return scratch.getFloat32(0, true);
}

/**
 * The float32 nearest (ties to even) a 64-bit integer given as its halves: once, not through a
 * float64 (which would round twice).
 * @param {number} hi - the high 32 bits (signed for int64, unsigned for uint64).
 * @param {number} lo - the low 32 bits, unsigned.
 * @returns {number}
 */
export function f32OfInt64(hi, lo) {
  if (hi >= -0x200000 && hi < 0x200000) return Math.fround(hi * TWO32 + lo); // |n| < 2^53: exact first
  const big = (BigInt(hi) << 32n) | BigInt(lo); // hi signed for int64, unsigned for uint64
  const negative = big < 0n;
  const a = negative ? -big : big;
  const shift = a.toString(2).length - 24;
  let q = a >> BigInt(shift);
  const r = a - (q << BigInt(shift));
  const half = 1n << BigInt(shift - 1);
  if (r > half || (r === half && (q & 1n) === 1n)) q++;
  const value = Number(q) * 2 ** shift;
  return Math.fround(negative ? -value : value);
}

/**
 * The writers of a float codec built from float32 values (float16, bfloat16, float8).
 * @param {number} bytes - 1 or 2.
 * @param {(x: number) => number} encode - the bits of a float32 value (not NaN).
 * @param {(bits: number, src: string) => number} nan - the bits of a NaN given as float32 bits, cast from `src`.
 * @returns {Pick<ElementCodec, "fromFloat" | "fromNaN" | "fromInt" | "fromInt64">}
 */
export function fromFloat32(bytes, encode, nan) {
  /** @type {(v: DataView, o: number, b: number) => void} */
  const put = bytes === 1 ? (v, o, b) => v.setUint8(o, b) : (v, o, b) => v.setUint16(o, b, true);
  return {
    fromFloat: (v, o, x) => put(v, o, encode(Math.fround(x))),
    fromNaN: (v, o, bits, src) => put(v, o, nan(bits, src)),
    fromInt: (v, o, n) => put(v, o, encode(Math.fround(n))),
    fromInt64: (v, o, hi, lo) => put(v, o, encode(f32OfInt64(hi, lo))),
  };
}
