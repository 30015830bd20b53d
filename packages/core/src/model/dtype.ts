import { CheckpointError } from "../errors.js";

/**
 * The tensor element types dcpjs stores, named as torch names them.
 *
 * `float16` and `bfloat16` are raw 2-byte elements (Node 20 has no `Float16Array`): their data
 * is a `Uint16Array` or `Uint8Array` holding the bit patterns. `bool` is one byte per element.
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
  | "bool";

/** Every {@link DType}, in the order torch lists them. */
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
];

/** Bytes per element of each {@link DType}, as torch's `element_size()`. */
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
};

/** The typed array each dtype's data is allocated as by {@link emptyTensor}. */
export type TypedArrayFor<D extends DType> = D extends "float64"
  ? Float64Array
  : D extends "float32"
    ? Float32Array
    : D extends "float16" | "bfloat16"
      ? Uint16Array
      : D extends "int64"
        ? BigInt64Array
        : D extends "int32"
          ? Int32Array
          : D extends "int16"
            ? Int16Array
            : D extends "int8"
              ? Int8Array
              : Uint8Array;

/**
 * Allocates a zero-filled typed array of `numel` elements of `dtype`.
 *
 * @param dtype - the element type.
 * @param numel - the number of elements.
 * @param shared - on a `SharedArrayBuffer`, which worker threads can read and write without a
 * copy (readers check and copy tensors there off the main thread). @default false
 * @returns `Float64Array`, `Float32Array`, `Uint16Array` (float16/bfloat16), `BigInt64Array`,
 * `Int32Array`, `Int16Array`, `Int8Array` or `Uint8Array` (uint8/bool).
 */
export function allocateTypedArray<D extends DType>(
  dtype: D,
  numel: number,
  shared = false,
): TypedArrayFor<D> {
  const bytes = numel * DTYPE_BYTES[dtype];
  const buffer = shared ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes);
  switch (dtype) {
    case "float64":
      return new Float64Array(buffer) as TypedArrayFor<D>;
    case "float32":
      return new Float32Array(buffer) as TypedArrayFor<D>;
    case "float16":
    case "bfloat16":
      return new Uint16Array(buffer) as TypedArrayFor<D>;
    case "int64":
      return new BigInt64Array(buffer) as TypedArrayFor<D>;
    case "int32":
      return new Int32Array(buffer) as TypedArrayFor<D>;
    case "int16":
      return new Int16Array(buffer) as TypedArrayFor<D>;
    case "int8":
      return new Int8Array(buffer) as TypedArrayFor<D>;
    default:
      return new Uint8Array(buffer) as TypedArrayFor<D>;
  }
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
