/**
 * Box geometry, in one home (as DCP's `resharding.py`): boxes of elements in row-major tensors —
 * overlap, intersection, contiguity, the copy between two boxes — the offset key chunks are
 * matched by, and the one hint-first chunk lookup.
 */

import { type StridedCopy, stridedCopy } from "./strided-copy.js";

/**
 * The number of elements of a tensor of `shape` (1 for a 0-d tensor).
 *
 * @param shape - dimensions in elements.
 */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** An n-d box: its start and size per dimension, in elements. */
export interface Box {
  readonly offsets: readonly number[];
  readonly sizes: readonly number[];
}

/** A chunk's offsets as a comparable key (`"0,512"`); the same offsets give the same key. */
export type OffsetKey = string & { readonly __offsetKey: true };

/**
 * The key of a box's offsets.
 * @param offsets - start per dimension.
 */
export function offsetKey(offsets: readonly number[]): OffsetKey {
  // offsets.join(","), without join's cost on the per-item path (most tensors have 1–2 dims).
  let key = offsets.length === 0 ? "" : `${offsets[0]}`;
  for (let d = 1; d < offsets.length; d++) key += `,${offsets[d]}`;
  return key as OffsetKey;
}

/**
 * Whether two shapes (or offsets) are equal element by element.
 * @param a - one.
 * @param b - the other.
 */
export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * Whether two boxes overlap, as DCP's `_check_box_overlap` (disjoint when separated along any dim).
 * @param a - one box.
 * @param b - the other, of the same rank.
 */
export function boxesOverlap(a: Box, b: Box): boolean {
  for (let d = 0; d < a.offsets.length; d++) {
    if (a.offsets[d]! >= b.offsets[d]! + b.sizes[d]! || b.offsets[d]! >= a.offsets[d]! + a.sizes[d]!)
      return false;
  }
  return true;
}

/** Where two overlapping boxes meet, relative to each: as DCP's `create_read_items_for_chunk_list`. */
export interface BoxIntersection {
  /** The intersection's start inside the saved box. */
  readonly storageOffsets: number[];
  /** The intersection's start inside the destination box. */
  readonly destOffsets: number[];
  /** The intersection's size per dimension. */
  readonly lengths: number[];
}

/**
 * The intersection of a destination box and a saved box, relative to each, or undefined when
 * they do not overlap.
 * @param dest - the box a rank loads into.
 * @param saved - a saved chunk.
 */
export function boxIntersection(dest: Box, saved: Box): BoxIntersection | undefined {
  if (!boxesOverlap(dest, saved)) return undefined;
  const storageOffsets: number[] = [];
  const destOffsets: number[] = [];
  const lengths: number[] = [];
  for (let d = 0; d < dest.offsets.length; d++) {
    const so = saved.offsets[d]!;
    const lo = dest.offsets[d]!;
    lengths.push(Math.min(so + saved.sizes[d]!, lo + dest.sizes[d]!) - Math.max(lo, so));
    storageOffsets.push(Math.max(lo - so, 0));
    destOffsets.push(Math.max(so - lo, 0));
  }
  return { storageOffsets, destOffsets, lengths };
}

/**
 * The chunk (or shard) at `offsets`: the one at `hint` when it matches, else the first that
 * does — the planners' positions are hints that usually hold.
 *
 * @param chunks - chunks with offsets.
 * @param offsets - the offsets sought.
 * @param hint - the position to try first.
 * @returns the chunk, or undefined.
 */
export function findChunk<C extends { readonly offsets: readonly number[] }>(
  chunks: readonly C[],
  offsets: readonly number[],
  hint?: number,
): C | undefined {
  const hinted = hint === undefined ? undefined : chunks[hint];
  if (hinted && sameShape(hinted.offsets, offsets)) return hinted;
  return chunks.find((c) => sameShape(c.offsets, offsets));
}

/**
 * Where an n-d box lies in a row-major tensor when its elements are one contiguous run, in
 * elements: leading dimensions of the box have length 1, then one partial dimension, then whole
 * dimensions. `undefined` when the box is not contiguous.
 *
 * @param shape - the tensor's shape.
 * @param offsets - the box's start per dimension.
 * @param lengths - the box's size per dimension.
 * @returns the first element's index and the element count.
 */
export function contiguousRun(
  shape: readonly number[],
  offsets: readonly number[],
  lengths: readonly number[],
): { start: number; count: number } | undefined {
  let k = 0;
  while (k < lengths.length - 1 && lengths[k] === 1) k++;
  for (let i = k + 1; i < lengths.length; i++)
    if (lengths[i] !== shape[i] || offsets[i] !== 0) return undefined;
  let start = 0;
  let stride = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    start += offsets[i]! * stride;
    stride *= shape[i]!;
  }
  return { start, count: numel(lengths) };
}

/**
 * The span of elements an n-d box covers in a row-major tensor: from its first element to just
 * past its last (the elements between its rows included). What a reader of part of a saved chunk
 * must fetch at least.
 *
 * @param shape - the tensor's shape.
 * @param offsets - the box's start per dimension.
 * @param lengths - the box's size per dimension.
 * @returns `[start, end)` in elements; `undefined` for an empty box.
 */
export function boxSpan(
  shape: readonly number[],
  offsets: readonly number[],
  lengths: readonly number[],
): { start: number; end: number } | undefined {
  if (lengths.some((l) => l === 0)) return undefined;
  let start = 0;
  let last = 0;
  let stride = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    start += offsets[i]! * stride;
    last += (offsets[i]! + lengths[i]! - 1) * stride;
    stride *= shape[i]!;
  }
  return { start, end: last + 1 };
}

/**
 * Copies an n-d box of elements from one contiguous row-major buffer into another.
 *
 * The box has size `lengths` and starts at `srcOffsets` in a source of shape `srcShape` and at
 * `dstOffsets` in a destination of shape `dstShape`. Trailing dimensions that are copied whole are
 * merged into one contiguous run, so a full copy is a single `set`. This is the primitive behind
 * resharding, as DCP's `narrow_tensor_by_index` + `copy_`.
 *
 * @param src - source bytes.
 * @param srcShape - source shape in elements.
 * @param srcOffsets - box start in the source, elements per dimension.
 * @param dst - destination bytes.
 * @param dstShape - destination shape in elements.
 * @param dstOffsets - box start in the destination, elements per dimension.
 * @param lengths - box size in elements per dimension.
 * @param elementBytes - bytes per element.
 */
export function copyBox(
  src: Uint8Array,
  srcShape: readonly number[],
  srcOffsets: readonly number[],
  dst: Uint8Array,
  dstShape: readonly number[],
  dstOffsets: readonly number[],
  lengths: readonly number[],
  elementBytes: number,
): void {
  const copy = boxCopy(srcShape, srcOffsets, dstShape, dstOffsets, lengths, elementBytes);
  if (copy) stridedCopy(src, dst, copy);
}

/**
 * The runs that copy an n-d box between two row-major buffers, for {@link stridedCopy} (on this
 * thread, as {@link copyBox} does, or on a worker): trailing dimensions copied whole on both sides
 * merge with the last partial one into one run; the dimensions before it are iterated.
 *
 * @param srcShape - source shape in elements.
 * @param srcOffsets - box start in the source, elements per dimension.
 * @param dstShape - destination shape in elements.
 * @param dstOffsets - box start in the destination, elements per dimension.
 * @param lengths - box size in elements per dimension.
 * @param elementBytes - bytes per element.
 * @returns the copy, with `bytes`, its size in bytes; `undefined` for an empty box.
 */
export function boxCopy(
  srcShape: readonly number[],
  srcOffsets: readonly number[],
  dstShape: readonly number[],
  dstOffsets: readonly number[],
  lengths: readonly number[],
  elementBytes: number,
): (StridedCopy & { readonly bytes: number }) | undefined {
  const ndim = lengths.length;
  const bytes = numel(lengths) * elementBytes;
  if (bytes === 0) return undefined;
  let k = ndim - 1;
  while (k > 0 && lengths[k] === srcShape[k] && lengths[k] === dstShape[k]) k--;
  const outer = Math.max(k, 0);
  let run = elementBytes;
  for (let i = outer; i < ndim; i++) run *= lengths[i]!;
  const srcStrides = stridesBytes(srcShape, elementBytes);
  const dstStrides = stridesBytes(dstShape, elementBytes);
  let srcBase = 0;
  let dstBase = 0;
  for (let i = 0; i < ndim; i++) {
    srcBase += srcOffsets[i]! * srcStrides[i]!;
    dstBase += dstOffsets[i]! * dstStrides[i]!;
  }
  return {
    bytes,
    run,
    srcBase,
    dstBase,
    counts: lengths.slice(0, outer),
    srcStrides: srcStrides.slice(0, outer),
    dstStrides: dstStrides.slice(0, outer),
  };
}

function stridesBytes(shape: readonly number[], elementBytes: number): number[] {
  const strides = new Array<number>(shape.length);
  let s = elementBytes;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i]!;
  }
  return strides;
}
