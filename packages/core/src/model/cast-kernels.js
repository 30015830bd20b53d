// Plain JavaScript (JSDoc-typed) so that worker threads load it as it is, from the sources as
// from dist, with no TypeScript loader: see storage/offload-worker.js. The typed front of it is
// model/cast.ts.
import { stridedCopy } from "./strided-copy.js";

//
// Element casts as torch 2.13's `Tensor.copy_` does them on x86-64 (c10's `static_cast`s), checked
// bit for bit against torch by test/core/cast.test.ts (test/support/python/cast_peer.py):
//   - float → float: round to nearest, ties to even. float16, bfloat16 and the float8 types are
//     built from a float32 (c10's `Half(float)`, `BFloat16(float)`…), so a float64 source rounds
//     to float32 first, then to them — twice, as torch does.
//   - float → int: truncation toward zero. Out of range, or NaN (C++ undefined behaviour): what
//     x86-64's `cvtt` instructions give and torch 2.13 returns — the "integer indefinite"
//     INT32_MIN for int32, int16 and int8 (their low bits: 0 for int16 and int8 once outside
//     int32), INT64_MIN for int64; uint8 and the wider unsigned types go through int64, wrapped.
//   - int → float: round to nearest, ties to even, once (int64 → float32 too); → float16,
//     bfloat16, float8: through float32.
//   - int → int: two's complement wrap (the low bits).
//   - → bool: nonzero (NaN included) is true; bool → anything: 0 or 1.
//   - a NaN keeps its sign and payload where the hardware conversion does (float16 → float32 in
//     torch's scalar loop; its vectorised loop gives 0x7fffffff there); bfloat16 as c10 makes it.

/**
 * How one dtype's elements are read and written. Sources are read as a `number` (exact for every
 * dtype but the 64-bit integers) or, for `int64`/`uint64`, as two 32-bit halves.
 *
 * @typedef {object} ElementCodec
 * @property {"float" | "int" | "int64" | "bool" | "complex"} kind - how its values are read.
 * @property {number} bytes - bytes per element.
 * @property {(v: DataView, o: number) => number} read - the value at byte `o` (for `int64`: the low
 *   32 bits, signed; NaN stands for a NaN whose sign `negative` tells).
 * @property {(v: DataView, o: number) => number} [high] - `int64`/`uint64`: the high 32 bits.
 * @property {(v: DataView, o: number) => number} [nanBits] - a float's NaN at byte `o` as the bits of
 *   the float32 NaN torch widens or narrows it to (sign and payload kept).
 * @property {(v: DataView, o: number, x: number) => void} fromFloat - writes a float value (not NaN).
 * @property {(v: DataView, o: number, bits: number, src: string) => void} fromNaN - writes a NaN
 *   given as float32 bits (from `nanBits`) cast from dtype `src`.
 * @property {(v: DataView, o: number, n: number) => void} fromInt - writes an integer (exact, |n| < 2^53).
 * @property {(v: DataView, o: number, hi: number, lo: number) => void} fromInt64 - writes a 64-bit
 *   integer given as its high 32 bits (signed from an `int64`, unsigned from a `uint64`) and its
 *   unsigned low 32 bits.
 */

const TWO32 = 4294967296;
const TWO63 = 2 ** 63;
/**
 * The float32 bits c10 widens the NaN of float8_e4m3fnuz, float8_e5m2fnuz and float8_e8m0fnu to
 * (a signalling NaN); torch 2.13 casts that NaN to integers as 0, other NaNs as the x86-64
 * "integer indefinite".
 */
const FNUZ_NAN = 0x7f800001;
const scratch = new DataView(new ArrayBuffer(8));

/**
 * The float32 nearest a number (ties to even), as its bits.
 * @param {number} x
 * @returns {number}
 */
function f32Bits(x) {
  scratch.setFloat32(0, x, true);
  return scratch.getUint32(0, true);
}

/**
 * Rounds a non-negative number to an integer, ties to even.
 * @param {number} m
 * @returns {number}
 */
function rint(m) {
  const f = Math.floor(m);
  const d = m - f;
  return d > 0.5 || (d === 0.5 && f % 2 === 1) ? f + 1 : f;
}

/** float16 bits of a float32 value (round to nearest even; overflow to ±Inf), as c10's `fp16_ieee_from_fp32_value`.
 * @param {number} x
 * @returns {number}
 */
function halfFromFloat(x) {
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
function halfValue(h) {
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
function bf16FromFloat(x) {
  const bits = f32Bits(x);
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/**
 * The float32 nearest (ties to even) a 64-bit integer given as its halves: once, not through a
 * float64 (which would round twice).
 * @param {number} hi - the high 32 bits (signed for int64, unsigned for uint64).
 * @param {number} lo - the low 32 bits, unsigned.
 * @returns {number}
 */
function f32OfInt64(hi, lo) {
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

/** The int64 halves of a float truncated toward zero; INT64_MIN when NaN or out of range (x86-64's cvttsd2si).
 * @param {number} x
 * @returns {[number, number]} the signed high and unsigned low 32 bits.
 */
function int64Halves(x) {
  if (!(x >= -TWO63 && x < TWO63)) return [-0x80000000, 0];
  const t = Math.trunc(x);
  const hi = Math.floor(t / TWO32);
  return [hi, t - hi * TWO32];
}

/** The int32 a float truncates to; INT32_MIN when NaN or out of range (x86-64's cvttss2si).
 * @param {number} x
 * @returns {number}
 */
function int32Of(x) {
  return x > -2147483649 && x < 2147483648 ? Math.trunc(x) | 0 : -0x80000000;
}

/**
 * The writers of a float codec built from float32 values (float16, bfloat16, float8).
 * @param {number} bytes - 1 or 2.
 * @param {(x: number) => number} encode - the bits of a float32 value (not NaN).
 * @param {(bits: number, src: string) => number} nan - the bits of a NaN given as float32 bits, cast from `src`.
 * @returns {Pick<ElementCodec, "fromFloat" | "fromNaN" | "fromInt" | "fromInt64">}
 */
function fromFloat32(bytes, encode, nan) {
  /** @type {(v: DataView, o: number, b: number) => void} */
  const put = bytes === 1 ? (v, o, b) => v.setUint8(o, b) : (v, o, b) => v.setUint16(o, b, true);
  return {
    fromFloat: (v, o, x) => put(v, o, encode(Math.fround(x))),
    fromNaN: (v, o, bits, src) => put(v, o, nan(bits, src)),
    fromInt: (v, o, n) => put(v, o, encode(Math.fround(n))),
    fromInt64: (v, o, hi, lo) => put(v, o, encode(f32OfInt64(hi, lo))),
  };
}

/**
 * An integer codec.
 * @param {number} bytes - bytes per element.
 * @param {(v: DataView, o: number) => number} get - reads one.
 * @param {(v: DataView, o: number, n: number) => void} set - writes one.
 * @param {(n: number) => number} wrap - an exact integer to the stored one.
 * @param {(x: number) => number} ofFloat - a float (not NaN) to the stored one.
 * @param {number} nan - what a NaN becomes.
 * @returns {ElementCodec}
 */
function integer(bytes, get, set, wrap, ofFloat, nan) {
  return {
    kind: "int",
    bytes,
    read: get,
    fromFloat: (v, o, x) => set(v, o, ofFloat(x)),
    fromNaN: (v, o, bits) => set(v, o, bits === FNUZ_NAN ? 0 : nan),
    fromInt: (v, o, n) => set(v, o, wrap(n)),
    fromInt64: (v, o, _hi, lo) => set(v, o, wrap(lo)),
  };
}

/**
 * The low 32 bits (unsigned) of a float's int64 truncation (0 out of int64 range or NaN).
 * @param {number} x
 * @returns {number}
 */
const lowOfInt64 = (x) => int64Halves(x)[1];

/** float32 NaN bits of a float64 NaN: sign and top payload bits, quieted (x86-64's cvtsd2ss).
 * @param {DataView} v
 * @param {number} o
 * @returns {number}
 */
function nanOfFloat64(v, o) {
  const hi = v.getUint32(o + 4, true);
  return ((hi & 0x80000000) | 0x7fc00000 | ((hi & 0xfffff) << 3) | (v.getUint32(o, true) >>> 29)) >>> 0;
}

/** @type {Record<string, ElementCodec>} */
const CODECS = {
  float64: {
    kind: "float",
    bytes: 8,
    read: (v, o) => v.getFloat64(o, true),
    nanBits: nanOfFloat64,
    fromFloat: (v, o, x) => v.setFloat64(o, x, true),
    // cvtss2sd: quieted, payload kept.
    fromNaN: (v, o, bits) => {
      v.setUint32(o, (bits & 7) << 29, true);
      v.setUint32(o + 4, ((bits & 0x80000000) | 0x7ff80000 | ((bits & 0x7fffff) >>> 3)) >>> 0, true);
    },
    fromInt: (v, o, n) => v.setFloat64(o, n, true),
    fromInt64: (v, o, hi, lo) => v.setFloat64(o, hi * TWO32 + lo, true),
  },
  float32: {
    kind: "float",
    bytes: 4,
    read: (v, o) => v.getFloat32(o, true),
    nanBits: (v, o) => v.getUint32(o, true),
    fromFloat: (v, o, x) => v.setFloat32(o, x, true),
    fromNaN: (v, o, bits) => v.setUint32(o, bits, true),
    fromInt: (v, o, n) => v.setFloat32(o, n, true),
    fromInt64: (v, o, hi, lo) => v.setFloat32(o, f32OfInt64(hi, lo), true),
  },
  float16: {
    kind: "float",
    bytes: 2,
    read: (v, o) => halfValue(v.getUint16(o, true)),
    nanBits: (v, o) => {
      const h = v.getUint16(o, true);
      return (((h & 0x8000) << 16) | 0x7f800000 | ((h & 0x3ff) << 13)) >>> 0;
    },
    // F16C's vcvtps2ph: quieted, the payload's top bits kept.
    ...fromFloat32(
      2,
      halfFromFloat,
      (bits) => ((bits >>> 16) & 0x8000) | 0x7e00 | ((bits & 0x7fffff) >>> 13),
    ),
  },
  bfloat16: {
    kind: "float",
    bytes: 2,
    read: (v, o) => {
      scratch.setUint32(0, v.getUint16(o, true) << 16, true);
      return scratch.getFloat32(0, true);
    },
    nanBits: (v, o) => (v.getUint16(o, true) << 16) >>> 0,
    // c10's round_to_nearest_even gives 0x7fc0 for any NaN; its vectorised float32 path (the one
    // torch takes for float32 at every length) 0xffff.
    ...fromFloat32(2, bf16FromFloat, (_bits, src) => (src === "float32" ? 0xffff : 0x7fc0)),
  },
  int64: {
    kind: "int64",
    bytes: 8,
    read: (v, o) => v.getInt32(o, true),
    high: (v, o) => v.getInt32(o + 4, true),
    fromFloat: (v, o, x) => {
      const [hi, lo] = int64Halves(x);
      v.setUint32(o, lo, true);
      v.setInt32(o + 4, hi, true);
    },
    fromNaN: (v, o, bits) => {
      v.setUint32(o, 0, true);
      v.setInt32(o + 4, bits === FNUZ_NAN ? 0 : -0x80000000, true);
    },
    fromInt: (v, o, n) => {
      const hi = Math.floor(n / TWO32);
      v.setUint32(o, n - hi * TWO32, true);
      v.setInt32(o + 4, hi, true);
    },
    fromInt64: (v, o, hi, lo) => {
      v.setUint32(o, lo, true);
      v.setInt32(o + 4, hi | 0, true);
    },
  },
  int32: integer(
    4,
    (v, o) => v.getInt32(o, true),
    (v, o, n) => v.setInt32(o, n, true),
    (n) => n | 0,
    int32Of,
    -0x80000000,
  ),
  int16: integer(
    2,
    (v, o) => v.getInt16(o, true),
    (v, o, n) => v.setInt16(o, n, true),
    (n) => (n << 16) >> 16,
    int32Of,
    0,
  ),
  int8: integer(
    1,
    (v, o) => v.getInt8(o),
    (v, o, n) => v.setInt8(o, n),
    (n) => (n << 24) >> 24,
    int32Of,
    0,
  ),
  uint8: integer(
    1,
    (v, o) => v.getUint8(o),
    (v, o, n) => v.setUint8(o, n),
    (n) => n & 0xff,
    lowOfInt64,
    0,
  ),
  uint16: integer(
    2,
    (v, o) => v.getUint16(o, true),
    (v, o, n) => v.setUint16(o, n, true),
    (n) => n & 0xffff,
    int32Of,
    0,
  ),
  uint32: integer(
    4,
    (v, o) => v.getUint32(o, true),
    (v, o, n) => v.setUint32(o, n, true),
    (n) => n >>> 0,
    lowOfInt64,
    0,
  ),
  bool: {
    kind: "bool",
    bytes: 1,
    read: (v, o) => (v.getUint8(o) === 0 ? 0 : 1),
    fromFloat: (v, o, x) => v.setUint8(o, x === 0 ? 0 : 1),
    fromNaN: (v, o) => v.setUint8(o, 1),
    fromInt: (v, o, n) => v.setUint8(o, n === 0 ? 0 : 1),
    fromInt64: (v, o, hi, lo) => v.setUint8(o, hi === 0 && lo === 0 ? 0 : 1),
  },
};
CODECS.uint64 = {
  .../** @type {ElementCodec} */ (CODECS.int64),
  high: (v, o) => v.getUint32(o + 4, true),
  // The compilers' float → uint64 on x86-64: cvttsd2si of x, or of x − 2^63 with the top bit flipped.
  fromFloat: (v, o, x) => {
    const big = x >= TWO63;
    const [hi, lo] = int64Halves(big ? x - TWO63 : x);
    v.setUint32(o, lo, true);
    v.setInt32(o + 4, big ? hi ^ -0x80000000 : hi, true);
  },
};

/**
 * A float8 format: `ebits` exponent and `mbits` mantissa bits, `bias`; `max` its largest finite
 * value; `fnuz`: no −0 and a single NaN, 0x80 (AMD's "finite, no unsigned zero"); `inf`: it has
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

Object.assign(CODECS, {
  float8_e4m3fn: float8({ ebits: 4, mbits: 3, bias: 7, max: 448, fnuz: false, inf: false }),
  float8_e4m3fnuz: float8({ ebits: 4, mbits: 3, bias: 8, max: 240, fnuz: true, inf: false }),
  float8_e5m2: float8({ ebits: 5, mbits: 2, bias: 15, max: 57344, fnuz: false, inf: true }),
  float8_e5m2fnuz: float8({ ebits: 5, mbits: 2, bias: 16, max: 57344, fnuz: true, inf: false }),
  float8_e8m0fnu: e8m0,
});

/**
 * A complex dtype: two `part`s, real then imaginary (torch's layout). A real value cast to it
 * fills the real part and zeroes the imaginary one, as `copy_`.
 *
 * @param {string} partName - the part's dtype.
 * @returns {ElementCodec & { part: string }}
 */
function complex(partName) {
  const part = /** @type {ElementCodec} */ (CODECS[partName]);
  const pb = part.bytes;
  return {
    kind: "complex",
    part: partName,
    bytes: 2 * pb,
    read: part.read,
    fromFloat: (v, o, x) => {
      part.fromFloat(v, o, x);
      part.fromFloat(v, o + pb, 0);
    },
    fromNaN: (v, o, bits, src) => {
      part.fromNaN(v, o, bits, src);
      part.fromFloat(v, o + pb, 0);
    },
    fromInt: (v, o, n) => {
      part.fromInt(v, o, n);
      part.fromFloat(v, o + pb, 0);
    },
    fromInt64: (v, o, hi, lo) => {
      part.fromInt64(v, o, hi, lo);
      part.fromFloat(v, o + pb, 0);
    },
  };
}

Object.assign(CODECS, {
  complex32: complex("float16"),
  complex64: complex("float32"),
  complex128: complex("float64"),
});

/**
 * The codec of a dtype, by torch's name; `undefined` for one no cast handles.
 *
 * @param {string} dtype - torch's name (`"bfloat16"`).
 * @returns {ElementCodec | undefined}
 */
export function elementCodec(dtype) {
  return Object.hasOwn(CODECS, dtype) ? CODECS[dtype] : undefined;
}

/**
 * Why `src` cannot be cast to `dst` (a sentence), or `undefined` when it can.
 *
 * @param {string} src - the saved dtype.
 * @param {string} dst - the target's dtype.
 * @returns {string | undefined}
 */
export function castRefusal(src, dst) {
  const from = elementCodec(src);
  const to = elementCodec(dst);
  if (!from) return `dcpjs cannot cast from ${src}`;
  if (!to) return `dcpjs cannot cast to ${dst}`;
  if (from.kind === "complex" && to.kind !== "complex")
    return `casting complex ${src} to real ${dst} would drop the imaginary part (torch warns and drops it; dcpjs refuses)`;
  return undefined;
}

/**
 * One element's cast, bound to its two dtypes.
 * @param {string} src - the source dtype's name.
 * @param {ElementCodec} from
 * @param {ElementCodec} to
 * @returns {(sv: DataView, so: number, dv: DataView, d: number) => void}
 */
function elementCast(src, from, to) {
  const nanBits = from.nanBits ?? (() => 0x7fc00000);
  switch (from.kind) {
    case "complex": {
      // complex → complex (castRefusal refuses complex → real): part by part.
      const fromPart = /** @type {string} */ (/** @type {{ part?: string }} */ (from).part);
      const toPart = /** @type {string} */ (/** @type {{ part?: string }} */ (to).part);
      const one = elementCast(
        fromPart,
        /** @type {ElementCodec} */ (CODECS[fromPart]),
        /** @type {ElementCodec} */ (CODECS[toPart]),
      );
      const sp = from.bytes / 2;
      const dp = to.bytes / 2;
      return (sv, s, dv, d) => {
        one(sv, s, dv, d);
        one(sv, s + sp, dv, d + dp);
      };
    }
    case "float":
      return (sv, s, dv, d) => {
        const x = from.read(sv, s);
        if (!Number.isNaN(x)) to.fromFloat(dv, d, x);
        else to.fromNaN(dv, d, nanBits(sv, s), src);
      };
    case "int64": {
      const high = /** @type {(v: DataView, o: number) => number} */ (from.high);
      return (sv, s, dv, d) => to.fromInt64(dv, d, high(sv, s), from.read(sv, s) >>> 0);
    }
    default:
      return (sv, s, dv, d) => to.fromInt(dv, d, from.read(sv, s));
  }
}

/**
 * bfloat16 → float32 (exact: the bits moved up) over typed arrays, where both runs are aligned.
 * @param {Uint8Array} src
 * @param {number} so - the run's first source byte.
 * @param {Uint8Array} dst
 * @param {number} dof - the run's first destination byte.
 * @param {number} count - elements.
 * @returns {boolean} whether it cast them (false: misaligned, cast element by element).
 */
function widenBf16(src, so, dst, dof, count) {
  const a = src.byteOffset + so;
  const b = dst.byteOffset + dof;
  if (a % 2 !== 0 || b % 4 !== 0) return false;
  const from = new Uint16Array(src.buffer, a, count);
  const to = new Uint32Array(dst.buffer, b, count);
  for (let i = 0; i < count; i++) to[i] = /** @type {number} */ (from[i]) << 16;
  return true;
}

/**
 * Casts a box of elements from one row-major buffer into another of another dtype: the
 * {@link import("./strided-copy.js").StridedCopy} given in elements (`run`, bases and strides
 * count elements, not bytes).
 *
 * @param {string} srcDtype - the source's dtype (torch's name).
 * @param {Uint8Array} src - the source bytes.
 * @param {string} dstDtype - the destination's dtype.
 * @param {Uint8Array} dst - the destination bytes.
 * @param {import("./strided-copy.js").StridedCopy} copy - the box, in elements; it must lie inside both.
 * @returns {void}
 * @throws {Error} when the pair cannot be cast ({@link castRefusal}).
 */
export function castBox(srcDtype, src, dstDtype, dst, copy) {
  const refusal = castRefusal(srcDtype, dstDtype);
  if (refusal) throw new Error(`Cannot cast ${srcDtype} to ${dstDtype}: ${refusal}`);
  const from = /** @type {ElementCodec} */ (elementCodec(srcDtype));
  const to = /** @type {ElementCodec} */ (elementCodec(dstDtype));
  if (srcDtype === dstDtype) {
    const bytes = from.bytes;
    stridedCopy(src, dst, {
      run: copy.run * bytes,
      srcBase: copy.srcBase * bytes,
      dstBase: copy.dstBase * bytes,
      counts: copy.counts,
      srcStrides: copy.srcStrides.map((x) => x * bytes),
      dstStrides: copy.dstStrides.map((x) => x * bytes),
    });
    return;
  }
  const one = elementCast(srcDtype, from, to);
  const fast = srcDtype === "bfloat16" && dstDtype === "float32" ? widenBf16 : undefined;
  const sv = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const dv = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
  const sb = from.bytes;
  const db = to.bytes;
  const { run, counts } = copy;
  const outer = counts.length;
  const idx = /** @type {number[]} */ (new Array(outer).fill(0));
  for (;;) {
    let s = copy.srcBase;
    let t = copy.dstBase;
    for (let i = 0; i < outer; i++) {
      const k = /** @type {number} */ (idx[i]);
      s += k * /** @type {number} */ (copy.srcStrides[i]);
      t += k * /** @type {number} */ (copy.dstStrides[i]);
    }
    let so = s * sb;
    let dof = t * db;
    if (!fast?.(src, so, dst, dof, run))
      for (let e = 0; e < run; e++, so += sb, dof += db) one(sv, so, dv, dof);
    let j = outer - 1;
    while (j >= 0) {
      const next = /** @type {number} */ (idx[j]) + 1;
      idx[j] = next;
      if (next < /** @type {number} */ (counts[j])) break;
      idx[j] = 0;
      j--;
    }
    if (j < 0) return;
  }
}

/**
 * Casts `count` contiguous elements.
 *
 * @param {string} srcDtype - the source's dtype.
 * @param {Uint8Array} src - the source bytes (its first element at byte 0).
 * @param {string} dstDtype - the destination's dtype.
 * @param {Uint8Array} dst - the destination bytes (its first element at byte 0).
 * @param {number} count - elements.
 * @returns {void}
 */
export function castElements(srcDtype, src, dstDtype, dst, count) {
  castBox(srcDtype, src, dstDtype, dst, {
    run: count,
    srcBase: 0,
    dstBase: 0,
    counts: [],
    srcStrides: [],
    dstStrides: [],
  });
}
