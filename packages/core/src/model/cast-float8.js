// Plain JavaScript (JSDoc-typed), for worker threads as model/cast-kernels.js: the float8
// types' codecs, decoded through their exact 256-value tables and encoded as c10 encodes them.
import { f32Bits, fromFloat32, rint } from "./cast-floats.js";

/** @typedef {import("./cast-kernels.js").ElementCodec} ElementCodec */

/**
 * The float32 bits c10 widens the NaN of float8_e4m3fnuz, float8_e5m2fnuz and float8_e8m0fnu to
 * (a signalling NaN); torch 2.13 casts that NaN to integers as 0, other NaNs as the x86-64
 * "integer indefinite".
 */
export const FNUZ_NAN = 0x7f800001;

/**
 * A float8 format: `ebits` exponent and `mbits` mantissa bits, `bias`; `max` its largest finite
 * value; `fnuz`: finite (no Inf), unsigned zero (no −0), one NaN (0x80); `inf`: it has
 * ±Inf (e5m2), else a value rounding past `max` is NaN.
 *
 * @param {{ ebits: number, mbits: number, bias: number, max: number, fnuz: boolean, inf: boolean }} f
 * @returns {ElementCodec}
 */
function float8(f) {
  const { mbits, bias, max, fnuz, inf } = f;
  /** @type {(negative: boolean) => number} ±max: torch's float8_e4m3fn saturates (±Inf too); the fnuz types overflow to their NaN */
  const saturate = (negative) => (fnuz ? 0x80 : (negative ? 0x80 : 0) | 0x7e);
  const minNormal = 2 ** (1 - bias);
  const tiny = 2 ** (1 - bias - mbits);
  /** @type {(negative: boolean) => number} */
  const nan = (negative) => (fnuz ? 0x80 : negative ? 0xff : 0x7f);
  /** @type {(negative: boolean) => number} */
  const overflow = (negative) => (inf ? (negative ? 0xfc : 0x7c) : saturate(negative));

  /** @type {number[]} */
  const values = [];
  for (let b = 0; b < 256; b++) {
    const sign = b & 0x80 ? -1 : 1;
    const e = (b & 0x7f) >>> mbits;
    const m = b & ((1 << mbits) - 1);
    if (fnuz ? b === 0x80 : inf ? e === (1 << f.ebits) - 1 && m !== 0 : (b & 0x7f) === 0x7f)
      values.push(Number.NaN);
    else if (inf && e === (1 << f.ebits) - 1) values.push(sign * Number.POSITIVE_INFINITY);
    else values.push(sign * (e === 0 ? m * tiny : (2 ** mbits + m) * 2 ** (e - bias - mbits)));
  }
  /** @type {(x: number) => number} bits of a float32 value, rounded to nearest even. */
  const encode = (x) => {
    const negative = x < 0 || Object.is(x, -0);
    const a = Math.abs(x);
    if (a === Number.POSITIVE_INFINITY) return overflow(negative);
    const quantum = a < minNormal ? tiny : 2 ** ((f32Bits(a) >>> 23) - 127 - mbits);
    const q = rint(a / quantum) * quantum;
    if (q > max) return overflow(negative);
    const s = negative && !(fnuz && q === 0) ? 0x80 : 0;
    if (q < minNormal) return s | (q / tiny);
    const e = (f32Bits(q) >>> 23) - 127;
    return s | ((e + bias) << mbits) | (q / 2 ** (e - mbits) - 2 ** mbits);
  };
  return {
    kind: "float",
    bytes: 1,
    read: (v, o) => /** @type {number} */ (values[v.getUint8(o)]),
    // Its NaN as float32 bits: the mantissa moved up, quieted; the fnuz NaN as c10 makes it, 0x7f800001.
    nanBits: (v, o) => {
      const b = v.getUint8(o);
      if (fnuz) return FNUZ_NAN;
      return (((b & 0x80) << 24) | 0x7fc00000 | ((b & ((1 << mbits) - 1)) << (23 - mbits))) >>> 0;
    },
    ...fromFloat32(1, encode, (bits) => nan(bits >= 0x80000000)),
  };
}

/**
 * float8_e8m0fnu: an unsigned power of two, 2^(b − 127); 0xff is NaN. From a float: the exponent,
 * rounded to nearest on the mantissa, ties up.
 * @type {ElementCodec}
 */
const e8m0 = {
  kind: "float",
  bytes: 1,
  read: (v, o) => {
    const b = v.getUint8(o);
    return b === 0xff ? Number.NaN : 2 ** (b - 127);
  },
  nanBits: () => FNUZ_NAN,
  ...fromFloat32(
    1,
    /** @param {number} x */ (x) => {
      const bits = f32Bits(x);
      const e = (bits >>> 23) & 0xff;
      if (e === 0xff) return 0xff;
      const m = bits & 0x7fffff;
      const up = m >= 0x400000;
      return up ? Math.min(e + 1, 0xff) : e;
    },
    () => 0xff,
  ),
};

/** @type {Readonly<Record<string, ElementCodec>>} The float8 codecs, by torch's name. */
export const FLOAT8_CODECS = {
  float8_e4m3fn: float8({ ebits: 4, mbits: 3, bias: 7, max: 448, fnuz: false, inf: false }),
  float8_e4m3fnuz: float8({ ebits: 4, mbits: 3, bias: 8, max: 240, fnuz: true, inf: false }),
  float8_e5m2: float8({ ebits: 5, mbits: 2, bias: 15, max: 57344, fnuz: false, inf: true }),
  float8_e5m2fnuz: float8({ ebits: 5, mbits: 2, bias: 16, max: 57344, fnuz: true, inf: false }),
  float8_e8m0fnu: e8m0,
};
