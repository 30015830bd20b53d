import { isNodeBuffer } from "#platform";
import { CheckpointError } from "../errors.js";
import { assertIntegerInRange } from "../validate.js";
import { DTYPE_BYTES } from "./dtype.js";
import { numel, type ShardedTensor, sliceTensor, type Tensor } from "./tensor.js";

/** Where one rank's chunk lies along the sharded dimension. */
export interface ChunkRange {
  /** First index (elements) along the dimension. */
  readonly start: number;
  /** Number of elements along the dimension (0 when the rank gets nothing). */
  readonly size: number;
}

/**
 * The piece of a dimension of `length` elements that `rank` gets when split into `worldSize`
 * pieces, as `torch.chunk`: every piece has `ceil(length / worldSize)` elements except the last
 * non-empty one, and trailing ranks may get nothing (10 over 4 → 3, 3, 3, 1; 5 over 4 → 2, 2, 1, 0).
 *
 * @param length - the dimension's size in elements.
 * @param rank - the rank, 0 ≤ rank < worldSize.
 * @param worldSize - the number of pieces, ≥ 1.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when rank or worldSize is out of range.
 */
export function chunkRange(length: number, rank: number, worldSize: number): ChunkRange {
  assertIntegerInRange("worldSize", worldSize, 1);
  assertIntegerInRange("rank", rank, 0, worldSize - 1);
  const chunk = Math.ceil(length / worldSize);
  const start = Math.min(rank * chunk, length);
  const end = Math.min(start + chunk, length);
  return { start, size: end - start };
}

/** Options of {@link shardTensor}. */
export interface ShardTensorOptions {
  /** The dimension to split along. @default 0 */
  readonly dim?: number;
  /** This rank, 0 ≤ rank < worldSize. */
  readonly rank: number;
  /** The number of ranks the tensor is split over. */
  readonly worldSize: number;
}

/**
 * Takes this rank's piece of a full tensor, split along `dim` with `torch.chunk`'s rule (see
 * {@link chunkRange}), as a {@link ShardedTensor} with one shard — or none when the rank gets
 * nothing. A 0-d tensor cannot be sharded; an empty dimension goes whole to rank 0.
 *
 * The shard's data is a view of `full`'s memory when the piece is contiguous (every dimension
 * before `dim` has size 1, e.g. `dim` 0), so no bytes are copied; otherwise it is a copy.
 *
 * @param full - the whole tensor (the same on every rank).
 * @param options - `dim` (default 0), `rank`, `worldSize`.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when `dim` is not a dimension of `full`, or
 * rank/worldSize are out of range.
 * @example
 * ```ts
 * const w = tensor("float32", [10, 4]);
 * const mine = shardTensor(w, { dim: 0, rank: 1, worldSize: 4 }); // rows 3..5
 * ```
 */
export function shardTensor(full: Tensor, options: ShardTensorOptions): ShardedTensor {
  const dim = options.dim ?? 0;
  assertIntegerInRange(`dim (shape [${full.shape.join(", ")}])`, dim, 0, full.shape.length - 1);
  const length = full.shape[dim]!;
  const { start, size } = chunkRange(length, options.rank, options.worldSize);
  const base = { dtype: full.dtype, shape: [...full.shape] };
  if (size === 0 && !(length === 0 && options.rank === 0)) return { ...base, shards: [] };
  const offsets = full.shape.map((_, i) => (i === dim ? start : 0));
  const sizes = full.shape.map((d, i) => (i === dim ? size : d));
  const contiguous = full.shape.slice(0, dim).every((d) => d === 1);
  const piece = contiguous
    ? viewRows(full, start * numel(full.shape.slice(dim + 1)), sizes)
    : sliceTensor(full, offsets, sizes);
  return { ...base, shards: [{ offsets, tensor: piece }] };
}

/** A tensor over `full`'s memory starting at element `startElement`, of shape `sizes` (no copy). */
function viewRows(full: Tensor, startElement: number, sizes: readonly number[]): Tensor {
  const elementBytes = DTYPE_BYTES[full.dtype];
  const byteOffset = full.data.byteOffset + startElement * elementBytes;
  const byteLength = numel(sizes) * elementBytes;
  // Keep the caller's typed-array type; Buffers and DataViews become plain Uint8Array views.
  const plain = full.data instanceof DataView || isNodeBuffer(full.data);
  type ViewCtor = {
    new (buffer: ArrayBufferLike, byteOffset: number, length: number): ArrayBufferView;
    BYTES_PER_ELEMENT: number;
  };
  const ctor = (plain ? Uint8Array : full.data.constructor) as ViewCtor;
  const data = new ctor(full.data.buffer, byteOffset, byteLength / ctor.BYTES_PER_ELEMENT);
  return { dtype: full.dtype, shape: [...sizes], data };
}
