import { SharedMemory } from "#platform";
import { CheckpointError } from "../errors.js";

/**
 * The tensor element types dcpjs stores, named as torch names them — every dtype torch's DCP can
 * save for a plain CPU tensor (torch 2.13), plus safetensors' two FP6 types, which torch lacks.
 *
 * Types with no JavaScript number type are held as their raw little-endian bit patterns:
 * `float16`, `bfloat16` and `complex32` (real, imaginary halves) in a `Uint16Array`; the 8-bit
 * floats (`float8_*`), `float4_e2m1fn_x2` (two 4-bit values per byte, as torch packs them) and
 * the FP6 types (`float6_*_x4`: four 6-bit values per 3 bytes, as safetensors packs them) in a
 * `Uint8Array`. `complex64` and `complex128` interleave real and imaginary parts in a
 * `Float32Array` / `Float64Array` (two array elements per tensor element). `bool` is one byte per
 * element. The shape always counts elements as torch does: a `float4_e2m1fn_x2` tensor of shape
 * `[n]` holds `2n` FP4 values in `n` bytes.
 */
export type DType =
  | "float64"
  | "float32"
  | "float16"
  | "bfloat16"
  | "int64"
  | "int32"
  | "int16"
  | "int8"
  | "uint8"
  | "bool"
  | "uint16"
  | "uint32"
  | "uint64"
  | "complex32"
  | "complex64"
  | "complex128"
  | "float8_e4m3fn"
  | "float8_e4m3fnuz"
  | "float8_e5m2"
  | "float8_e5m2fnuz"
  | "float8_e8m0fnu"
  | "float4_e2m1fn_x2"
  | "float6_e2m3fn_x4"
  | "float6_e3m2fn_x4";

/** Every {@link DType}: the ten dcpjs first held, in the order torch lists them, then the rest. */
export const DTYPES: readonly DType[] = [
  "float64",
  "float32",
  "float16",
  "bfloat16",
  "int64",
  "int32",
  "int16",
  "int8",
  "uint8",
  "bool",
  "uint16",
  "uint32",
  "uint64",
  "complex32",
  "complex64",
  "complex128",
  "float8_e4m3fn",
  "float8_e4m3fnuz",
  "float8_e5m2",
  "float8_e5m2fnuz",
  "float8_e8m0fnu",
  "float4_e2m1fn_x2",
  "float6_e2m3fn_x4",
  "float6_e3m2fn_x4",
];

/**
 * Bytes per element of each {@link DType}, as torch's `element_size()`; for packed sub-byte types
 * the bytes of one packed element (`float4_e2m1fn_x2`: 1 byte for 2 values; `float6_*_x4`: 3 bytes
 * for 4 values).
 */
export const DTYPE_BYTES: Readonly<Record<DType, number>> = {
  float64: 8,
  float32: 4,
  float16: 2,
  bfloat16: 2,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
  uint16: 2,
  uint32: 4,
  uint64: 8,
  complex32: 4,
  complex64: 8,
  complex128: 16,
  float8_e4m3fn: 1,
  float8_e4m3fnuz: 1,
  float8_e5m2: 1,
  float8_e5m2fnuz: 1,
  float8_e8m0fnu: 1,
  float4_e2m1fn_x2: 1,
  float6_e2m3fn_x4: 3,
  float6_e3m2fn_x4: 3,
};

/** The typed array each dtype's data is allocated as, by name (see {@link TypedArrayFor}). */
interface TypedArrays {
  float64: Float64Array;
  float32: Float32Array;
  float16: Uint16Array;
  bfloat16: Uint16Array;
  int64: BigInt64Array;
  int32: Int32Array;
  int16: Int16Array;
  int8: Int8Array;
  uint8: Uint8Array;
  bool: Uint8Array;
  uint16: Uint16Array;
  uint32: Uint32Array;
  uint64: BigUint64Array;
  complex32: Uint16Array;
  complex64: Float32Array;
  complex128: Float64Array;
  float8_e4m3fn: Uint8Array;
  float8_e4m3fnuz: Uint8Array;
  float8_e5m2: Uint8Array;
  float8_e5m2fnuz: Uint8Array;
  float8_e8m0fnu: Uint8Array;
  float4_e2m1fn_x2: Uint8Array;
  float6_e2m3fn_x4: Uint8Array;
  float6_e3m2fn_x4: Uint8Array;
}

/** The typed array each dtype's data is allocated as by {@link emptyTensor}. */
export type TypedArrayFor<D extends DType> = TypedArrays[D];

type TypedArrayConstructor = new (buffer: ArrayBufferLike) => ArrayBufferView;

const CONSTRUCTORS: Readonly<Record<DType, TypedArrayConstructor>> = {
  float64: Float64Array,
  float32: Float32Array,
  float16: Uint16Array,
  bfloat16: Uint16Array,
  int64: BigInt64Array,
  int32: Int32Array,
  int16: Int16Array,
  int8: Int8Array,
  uint8: Uint8Array,
  bool: Uint8Array,
  uint16: Uint16Array,
  uint32: Uint32Array,
  uint64: BigUint64Array,
  complex32: Uint16Array,
  complex64: Float32Array,
  complex128: Float64Array,
  float8_e4m3fn: Uint8Array,
  float8_e4m3fnuz: Uint8Array,
  float8_e5m2: Uint8Array,
  float8_e5m2fnuz: Uint8Array,
  float8_e8m0fnu: Uint8Array,
  float4_e2m1fn_x2: Uint8Array,
  float6_e2m3fn_x4: Uint8Array,
  float6_e3m2fn_x4: Uint8Array,
};

/**
 * Allocates a zero-filled typed array for `numel` elements of `dtype` (`numel ×`
 * {@link DTYPE_BYTES} bytes).
 *
 * @param dtype - the element type.
 * @param numel - the number of elements.
 * @param shared - on a `SharedArrayBuffer`, which worker threads can read and write without a
 * copy (readers check and copy tensors there off the main thread). @default false
 * @returns the dtype's typed array ({@link TypedArrayFor}): `Float64Array`, `Float32Array`,
 * `Uint16Array` (float16, bfloat16, uint16, complex32 halves), `BigInt64Array`, `BigUint64Array`
 * (uint64), `Int32Array`, `Uint32Array`, `Int16Array`, `Int8Array`, or `Uint8Array` (uint8, bool,
 * FP8, FP4, FP6); complex64/complex128 interleave real and imaginary parts in a
 * `Float32Array`/`Float64Array` of `2 × numel` numbers.
 */
export function allocateTypedArray<D extends DType>(
  dtype: D,
  numel: number,
  shared = false,
): TypedArrayFor<D> {
  const bytes = numel * DTYPE_BYTES[dtype];
  const buffer = shared ? new SharedMemory(bytes) : new ArrayBuffer(bytes);
  return new CONSTRUCTORS[dtype](buffer) as TypedArrayFor<D>;
}

/**
 * Whether `value` names a {@link DType}.
 *
 * @param value - anything.
 */
export function isDType(value: unknown): value is DType {
  return typeof value === "string" && Object.hasOwn(DTYPE_BYTES, value);
}

/**
 * Checks that `value` names a {@link DType}.
 *
 * @param value - the dtype to check.
 * @param what - what the value is, for the error message.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when it is not one of {@link DTYPES}.
 */
export function assertDType(value: unknown, what = "dtype"): asserts value is DType {
  if (!isDType(value)) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected ${what} to be one of ${DTYPES.join(", ")}, got ${JSON.stringify(value)}`,
    );
  }
}
