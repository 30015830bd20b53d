import { CheckpointError } from "../errors.js";
import { allocateTypedArray, assertDType, DTYPE_BYTES, type DType, type TypedArrayFor } from "./dtype.js";
import { copyBox, numel } from "./geometry.js";

/**
 * A dense, contiguous, row-major tensor: dcpjs's stand-in for a CPU `torch.Tensor`.
 *
 * `data` is any `ArrayBufferView` (a typed array or `Uint8Array` view) of exactly
 * `numel(shape) × DTYPE_BYTES[dtype]` bytes, little-endian. A 0-d tensor has `shape: []` and one
 * element.
 */
export interface Tensor {
  /** Element type, as torch names it. */
  readonly dtype: DType;
  /** Dimensions in elements, outermost first; `[]` for a 0-d (scalar) tensor. */
  readonly shape: readonly number[];
  /** The elements, contiguous, row-major, little-endian. */
  readonly data: ArrayBufferView;
}

/** One chunk of a {@link ShardedTensor} that this rank holds. */
export interface Shard {
  /** Where the chunk starts in the global tensor, one offset (elements) per dimension. */
  readonly offsets: readonly number[];
  /** The chunk itself; its shape is the chunk's size. */
  readonly tensor: Tensor;
}

/**
 * This rank's chunks of a global tensor: dcpjs's stand-in for torch's `ShardedTensor` / `DTensor`.
 *
 * The chunks of all ranks together must cover the global tensor exactly once (replicated chunks
 * are deduplicated at save time); a rank may hold no chunk.
 */
export interface ShardedTensor {
  /** Element type of every chunk. */
  readonly dtype: DType;
  /** The global tensor's dimensions in elements. */
  readonly shape: readonly number[];
  /** This rank's chunks. */
  readonly shards: readonly Shard[];
}

export { numel };

/**
 * Whether `value` is a {@link Tensor}: an object with a dtype name, an integer shape array and an
 * `ArrayBufferView` `data`.
 *
 * @param value - anything.
 */
export function isTensor(value: unknown): value is Tensor {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Partial<Tensor>;
  return typeof v.dtype === "string" && Array.isArray(v.shape) && ArrayBuffer.isView(v.data);
}

/**
 * Whether `value` is a {@link ShardedTensor}: an object with a dtype name, a shape and a `shards` array.
 *
 * @param value - anything.
 */
export function isShardedTensor(value: unknown): value is ShardedTensor {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Partial<ShardedTensor>;
  return typeof v.dtype === "string" && Array.isArray(v.shape) && Array.isArray(v.shards);
}

/**
 * A tensor's bytes as a `Uint8Array` view of its memory (no copy).
 *
 * @param t - the tensor.
 * @returns a view of exactly `t.data.byteLength` bytes.
 */
export function tensorBytes(t: Tensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/**
 * Checks that a tensor is well-formed: known dtype, non-negative integer shape, and a data
 * length of exactly `numel × element size` bytes.
 *
 * @param t - the tensor.
 * @param what - its name, for the error message (e.g. the fqn).
 * @throws {@link CheckpointError} `INVALID_STATE_DICT` naming what was expected and found.
 */
export function validateTensor(t: Tensor, what: string): void {
  assertDType(t.dtype, `dtype of ${what}`);
  for (const d of t.shape) {
    if (!Number.isSafeInteger(d) || d < 0) {
      throw new CheckpointError(
        "INVALID_STATE_DICT",
        `Expected the shape of ${what} to hold non-negative integers, got [${t.shape.join(", ")}]`,
      );
    }
  }
  const expected = numel(t.shape) * DTYPE_BYTES[t.dtype];
  if (t.data.byteLength !== expected) {
    throw new CheckpointError(
      "INVALID_STATE_DICT",
      `Expected ${what} (${t.dtype}[${t.shape.join(", ")}]) to hold ${expected} bytes, got ${t.data.byteLength}`,
    );
  }
}

/**
 * Builds a {@link Tensor}, allocating zeroed data when none is given.
 *
 * @param dtype - the element type.
 * @param shape - dimensions in elements.
 * @param data - the elements; its byte length must be `numel(shape) × DTYPE_BYTES[dtype]`.
 * @throws {@link CheckpointError} `INVALID_STATE_DICT` when `data` has the wrong length.
 * @example
 * ```ts
 * const w = tensor("float32", [2, 3], new Float32Array([1, 2, 3, 4, 5, 6]));
 * ```
 */
export function tensor(dtype: DType, shape: readonly number[], data?: ArrayBufferView): Tensor {
  const t: Tensor = { dtype, shape: [...shape], data: data ?? allocateTypedArray(dtype, numel(shape)) };
  validateTensor(t, "tensor");
  return t;
}

/**
 * Allocates a zero-filled tensor (like `torch.zeros` / DCP's `torch.empty` for a fresh load), on a
 * `SharedArrayBuffer`: a load checks and copies large items into it on worker threads, off the
 * main thread (typed arrays on shared memory behave as others, except that `postMessage` shares
 * rather than copies them).
 *
 * @param dtype - the element type.
 * @param shape - dimensions in elements.
 * @returns a tensor whose `data` is the typed array for `dtype` (see {@link allocateTypedArray}).
 */
export function emptyTensor<D extends DType>(
  dtype: D,
  shape: readonly number[],
): Tensor & { data: TypedArrayFor<D> } {
  return { dtype, shape: [...shape], data: allocateTypedArray(dtype, numel(shape), true) };
}

/**
 * Copies the n-d box `[offsets, offsets + sizes)` out of `t` into a new tensor.
 *
 * @param t - the source tensor.
 * @param offsets - box start, elements per dimension.
 * @param sizes - box size, elements per dimension.
 * @returns a new contiguous tensor of shape `sizes`.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when the box is not inside `t`.
 */
export function sliceTensor(t: Tensor, offsets: readonly number[], sizes: readonly number[]): Tensor {
  if (offsets.length !== t.shape.length || sizes.length !== t.shape.length) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected offsets and sizes of rank ${t.shape.length}, got [${offsets.join(", ")}] and [${sizes.join(", ")}]`,
    );
  }
  for (let i = 0; i < t.shape.length; i++) {
    if (offsets[i]! < 0 || sizes[i]! < 0 || offsets[i]! + sizes[i]! > t.shape[i]!) {
      throw new CheckpointError(
        "INVALID_ARGUMENT",
        `Expected the box at [${offsets.join(", ")}] of size [${sizes.join(", ")}] to lie inside shape [${t.shape.join(", ")}]`,
      );
    }
  }
  const out = emptyTensor(t.dtype, sizes);
  copyBox(
    tensorBytes(t),
    t.shape,
    offsets,
    tensorBytes(out),
    sizes,
    sizes.map(() => 0),
    sizes,
    DTYPE_BYTES[t.dtype],
  );
  return out;
}
