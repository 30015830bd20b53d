// Plain JavaScript (JSDoc-typed) so that worker threads load it as it is, from the sources as
// from dist, with no TypeScript loader: see storage/offload-worker.js. The typed front of it is
// model/cast.ts.

import { FLOAT8_CODECS, FNUZ_NAN } from "./cast-float8.js";
import {
  bf16FromFloat,
  bf16Value,
  f32OfInt64,
  fromFloat32,
  halfFromFloat,
  halfValue,
} from "./cast-floats.js";
import { stridedCopy } from "./strided-copy.js";

// Element casts as torch 2.13's `Tensor.copy_` does them on x86-64 (c10's `static_cast`s), checked
// bit for bit against torch by test/core/cast.test.ts (test/support/python/cast_peer.py):
//   - float → float: round to nearest, ties to even. float16, bfloat16 and the float8 types are
//     built from a float32 (c10's `Half(float)`, `BFloat16(float)`…), so a float64 source rounds
//     to float32 first, then to them — twice, as torch does.
//   - float → int: truncation toward zero. Out of range, or NaN (C++ undefined behaviour): what
//     x86-64's `cvtt` instructions give and torch 2.13 returns — the "integer indefinite"
//     INT32_MIN for int32, int16 and int8 (their low bits: 0 for int16 and int8 once outside
//     int32), INT64_MIN for int64; uint8 and uint32 the int64 result wrapped, uint16 as int16,
//     uint64 the compilers' two-step conversion (docs/format.md, "Cast on load", lists them).
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
 *   32 bits, signed; for a complex dtype, its real part).
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
    read: (v, o) => bf16Value(v.getUint16(o, true)),
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

Object.assign(CODECS, FLOAT8_CODECS);

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
