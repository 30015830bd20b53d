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
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
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

/**
 * The dimension a sweep over `boxes` sorts by: the one along which consecutive boxes' starts
 * change most often (the sharded one), the first on ties. Along it, a box is compared only with
 * boxes whose span there overlaps its own — with all of them when they share every start there
 * (a sweep along an unsharded dimension would compare every pair).
 *
 * @param boxes - boxes of `ndim` dimensions each.
 * @param ndim - their number of dimensions, ≥ 1.
 * @returns the dimension, in `[0, ndim)`.
 */
export function sweepDimension(boxes: readonly Box[], ndim: number): number {
  if (ndim <= 1) return 0;
  let best = 0;
  let bestChanges = -1;
  for (let d = 0; d < ndim; d++) {
    let changes = 0;
    for (let i = 1; i < boxes.length; i++) if (boxes[i]!.offsets[d] !== boxes[i - 1]!.offsets[d]) changes++;
    if (changes > bestChanges) {
      best = d;
      bestChanges = changes;
    }
  }
  return best;
}

/**
 * Whether every box has `ndim` offsets and sizes and finite numbers along `dim`: what
 * {@link overlappingPairs} and {@link BoxIndex} need to give the same answers as comparing every
 * pair with {@link boxesOverlap}.
 */
function sweepable(boxes: readonly Box[], ndim: number, dim: number): boolean {
  for (const b of boxes) {
    if (b.offsets.length !== ndim || b.sizes.length !== ndim) return false;
    if (!Number.isFinite(b.offsets[dim]) || !Number.isFinite(b.sizes[dim])) return false;
  }
  return true;
}

/** Positions `0..n-1` sorted by `key` (ties by position); `undefined` when already in that order. */
function sortedPositions(key: readonly number[]): number[] | undefined {
  let sorted = true;
  for (let i = 1; i < key.length && sorted; i++) sorted = key[i - 1]! <= key[i]!;
  if (sorted) return undefined;
  return Array.from({ length: key.length }, (_, i) => i).sort((a, b) => key[a]! - key[b]! || a - b);
}

/**
 * Every pair of overlapping boxes (by {@link boxesOverlap}), found by a sweep along one dimension
 * ({@link sweepDimension}) instead of comparing every pair — as DCP 2.13's `_validate_global_plan`.
 * Boxes whose offsets or sizes have another number of dimensions than `ndim`, or that are not
 * finite along the sweep, are compared pairwise, as before.
 *
 * @param boxes - the boxes (a tensor's chunks).
 * @param ndim - the tensor's number of dimensions.
 * @returns the pairs `[i, j]` with `i < j`, sorted by `i` then `j` (the order a pairwise loop finds them).
 */
export function overlappingPairs(boxes: readonly Box[], ndim: number): [number, number][] {
  const pairs: [number, number][] = [];
  const n = boxes.length;
  const dim = ndim === 0 ? 0 : sweepDimension(boxes, ndim);
  if (ndim === 0 || !sweepable(boxes, ndim, dim)) {
    for (let i = 0; i < n; i++)
      for (let j = i + 1; j < n; j++) if (boxesOverlap(boxes[i]!, boxes[j]!)) pairs.push([i, j]);
    return pairs;
  }
  const start: number[] = [];
  const end: number[] = [];
  for (const b of boxes) {
    start.push(b.offsets[dim]!);
    end.push(b.offsets[dim]! + b.sizes[dim]!);
  }
  const order = sortedPositions(start);
  const at = order ? (p: number) => order[p]! : (p: number) => p;
  // Two boxes overlap along `dim` only when the later-starting one starts before the other ends.
  for (let p = 0; p < n; p++) {
    const i = at(p);
    for (let q = p + 1; q < n && start[at(q)]! < end[i]!; q++) {
      const j = at(q);
      if (boxesOverlap(boxes[i]!, boxes[j]!)) pairs.push(i < j ? [i, j] : [j, i]);
    }
  }
  return pairs.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
}

/** How many of a tensor's first boxes {@link BoxIndex} surveys to pick its sweep dimension. */
const SURVEY_BOXES = 64;

/**
 * Boxes of one tensor held in columns: box `i`'s `ndim` offsets and sizes at `first + i · ndim` in
 * `offsets` and `sizes` (a columnar metadata's chunks).
 */
export interface BoxColumns {
  /** Every box's offsets, `ndim` numbers each. */
  readonly offsets: Float64Array;
  /** Every box's sizes, laid out as the offsets. */
  readonly sizes: Float64Array;
  /** Where box 0's numbers start. */
  readonly first: number;
  /** How many boxes. */
  readonly count: number;
}

/**
 * The saved boxes of one tensor, indexed to find those a box meets without testing each of them
 * (as DCP 2.13's `create_read_items_for_chunk_list` sweeps instead of comparing every pair): their
 * starts along one dimension ({@link sweepDimension}) in order, with the running maximum of their
 * ends. Built once per tensor: one pass when the boxes come in order along it with their ends in
 * order too (as a save's chunks do — the boxes themselves are then the index, nothing is copied),
 * else a sort, O(n log n). Boxes an index cannot order (other numbers of dimensions, or not finite
 * along the sweep) are tested one by one, as before. The boxes are objects ({@link Box}) or
 * columns ({@link BoxColumns}).
 */
export class BoxIndex {
  readonly #count: number;
  readonly #ndim: number;
  readonly #dim: number;
  /** Box `i`'s offset and size along dimension `d`. */
  readonly #offset: (i: number, d: number) => number;
  readonly #size: (i: number, d: number) => number;
  /** Whether the index orders the boxes at all (else every box is tested). */
  readonly #indexed: boolean;
  /** Box positions in the order of their starts; `undefined` when that is their own order. */
  readonly #order: Uint32Array | undefined;
  /** Starts in that order, and the running maximum of the ends; `undefined` when read from the boxes. */
  readonly #start: Float64Array | undefined;
  readonly #maxEnd: Float64Array | undefined;

  /**
   * @param boxes - the saved boxes (read, not copied: they must not change while the index is used).
   * @param ndim - their tensor's number of dimensions.
   */
  constructor(boxes: readonly Box[] | BoxColumns, ndim: number) {
    this.#ndim = ndim;
    let usable = ndim > 0;
    let n: number;
    if (Array.isArray(boxes)) {
      const list = boxes as readonly Box[];
      n = list.length;
      this.#offset = (i, d) => list[i]!.offsets[d]!;
      this.#size = (i, d) => list[i]!.sizes[d]!;
      for (let i = 0; i < n && usable; i++)
        usable = list[i]!.offsets.length === ndim && list[i]!.sizes.length === ndim;
    } else {
      const { offsets, sizes, first, count } = boxes as BoxColumns;
      n = count;
      this.#offset = (i, d) => offsets[first + i * ndim + d]!;
      this.#size = (i, d) => sizes[first + i * ndim + d]!;
    }
    this.#count = n;
    const offset = this.#offset;
    const size = this.#size;
    // The sweep dimension from the first boxes (it only steers speed, not answers), then one pass.
    const dim = ndim === 0 || !usable ? 0 : sweepDimensionOf(Math.min(n, SURVEY_BOXES), ndim, offset);
    this.#dim = dim;
    let inOrder = true;
    if (usable && !Array.isArray(boxes)) {
      // Columns: one strided pass over the typed arrays (a tensor's chunks, once per load).
      const { offsets, sizes, first } = boxes as BoxColumns;
      let prevStart = Number.NEGATIVE_INFINITY;
      let prevEnd = Number.NEGATIVE_INFINITY;
      for (let at = first + dim, i = 0; i < n; i++, at += ndim) {
        const start = offsets[at]!;
        const end = start + sizes[at]!;
        if (!(end - end === 0)) {
          usable = false; // not finite
          break;
        }
        if (start < prevStart || end < prevEnd) inOrder = false;
        prevStart = start;
        prevEnd = end;
      }
    } else {
      let prevStart = Number.NEGATIVE_INFINITY;
      let prevEnd = Number.NEGATIVE_INFINITY;
      for (let i = 0; i < n && usable; i++) {
        const start = offset(i, dim);
        const end = start + size(i, dim);
        usable = Number.isFinite(end);
        if (start < prevStart || end < prevEnd) inOrder = false;
        prevStart = start;
        prevEnd = end;
      }
    }
    this.#indexed = usable;
    if (!usable || inOrder) {
      this.#order = undefined;
      this.#start = undefined;
      this.#maxEnd = undefined;
      return; // the boxes are their own index, or none helps
    }
    const order = Array.from({ length: n }, (_, i) => i);
    order.sort((a, b) => offset(a, dim) - offset(b, dim) || a - b);
    const start = new Float64Array(n);
    const maxEnd = new Float64Array(n);
    let end = Number.NEGATIVE_INFINITY;
    for (let p = 0; p < n; p++) {
      const i = order[p]!;
      start[p] = offset(i, dim);
      end = Math.max(end, offset(i, dim) + size(i, dim));
      maxEnd[p] = end;
    }
    this.#order = Uint32Array.from(order);
    this.#start = start;
    this.#maxEnd = maxEnd;
  }

  /** How many boxes the index holds: the boxes' count when it was built. */
  get size(): number {
    return this.#count;
  }

  /** Whether box `i` overlaps `box` (as {@link boxesOverlap}). */
  #overlaps(box: Box, i: number): boolean {
    for (let d = 0; d < box.offsets.length; d++) {
      const o = this.#offset(i, d);
      if (box.offsets[d]! >= o + this.#size(i, d) || o >= box.offsets[d]! + box.sizes[d]!) return false;
    }
    return true;
  }

  /**
   * The positions of the boxes that overlap `box` (by {@link boxesOverlap}), ascending: the same
   * as testing every box in order.
   *
   * @param box - the box sought, of the index's number of dimensions.
   */
  overlapping(box: Box): number[] {
    const found: number[] = [];
    const dim = this.#dim;
    const lo = box.offsets[dim]!;
    const hi = lo + box.sizes[dim]!;
    if (
      !this.#indexed ||
      box.offsets.length !== this.#ndim ||
      box.sizes.length !== this.#ndim ||
      !Number.isFinite(lo) ||
      !Number.isFinite(hi)
    ) {
      for (let i = 0; i < this.#count; i++) if (this.#overlaps(box, i)) found.push(i);
      return found;
    }
    const order = this.#order;
    const start = this.#start;
    const maxEnd = this.#maxEnd;
    const offset = this.#offset;
    const size = this.#size;
    const startAt = start ? (p: number) => start[p]! : (p: number) => offset(p, dim);
    const maxEndAt = maxEnd ? (p: number) => maxEnd[p]! : (p: number) => offset(p, dim) + size(p, dim);
    // Candidates start before `hi` (a prefix in start order) and end after `lo` (none before the
    // first position whose running maximum end passes `lo`).
    const stop = firstWhere(this.#count, (p) => startAt(p) >= hi);
    for (let p = firstWhere(stop, (p) => maxEndAt(p) > lo); p < stop; p++) {
      const i = order ? order[p]! : p;
      if (this.#overlaps(box, i)) found.push(i);
    }
    return order && found.length > 1 ? found.sort((a, b) => a - b) : found;
  }
}

/** {@link sweepDimension} of the first `n` boxes, read through `offset`. */
function sweepDimensionOf(n: number, ndim: number, offset: (i: number, d: number) => number): number {
  if (ndim <= 1) return 0;
  let best = 0;
  let bestChanges = -1;
  for (let d = 0; d < ndim; d++) {
    let changes = 0;
    for (let i = 1; i < n; i++) if (offset(i, d) !== offset(i - 1, d)) changes++;
    if (changes > bestChanges) {
      best = d;
      bestChanges = changes;
    }
  }
  return best;
}

/**
 * The first position in `[0, n)` where a predicate that is false up to some position and true
 * from there holds (`n` when it never does): a binary search.
 */
function firstWhere(n: number, holds: (p: number) => boolean): number {
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (holds(mid)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}
