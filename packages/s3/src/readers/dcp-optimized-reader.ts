import { CheckpointError } from "@dcpjs/core";
import { assertReadRange, type FileReadStream, throwIfAborted } from "@dcpjs/core/extend";
import {
  assertObjectRef,
  type CheckedBody,
  getChecked,
  getRange,
  getRangeInto,
  type S3ObjectRef,
} from "../ranged-get.js";
import { Serialized } from "./serialized.js";

/** The largest gap between two items that still shares one GET when none is given: 32 MiB. */
export const DEFAULT_MAX_GAP_SIZE = 32 * 1024 * 1024;
/**
 * Items at least this large are not coalesced: any part of them is fetched by its own ranged
 * GET, so the pieces of one large item download in parallel. @default 16 MiB
 */
export const DEFAULT_PARALLEL_THRESHOLD = 16 * 1024 * 1024;
/** The size of each ranged GET into a large item: the reader constructor's `pieceBytes` (AWS's guidance: 8–16 MiB). */
export const RANGE_GET_BYTES = 8 * 1024 * 1024;

/** A byte range `[start, end)` of one stored item. */
export interface ItemRange {
  /** First byte, inclusive. */
  readonly start: number;
  /** Last byte, exclusive. */
  readonly end: number;
}

/** Items read through one ranged GET. */
export interface RangeGroup {
  /** The group's first byte (its first item's start). */
  readonly start: number;
  /** The group's end (its last item's end). */
  readonly end: number;
  /** The items, ascending. */
  readonly items: readonly ItemRange[];
}

const FIND_ITEM_ERROR_PREFIX = "DCPOptimizedS3Reader only supports sequentially accessing provided ranges: ";

function invalid(message: string): CheckpointError {
  return new CheckpointError("INVALID_ARGUMENT", message);
}

/**
 * Sorts nothing but checks and coalesces item ranges, as s3torchconnector's
 * `_validate_and_coalesce_ranges`: zero-length ranges are dropped, identical ranges are merged
 * (upstream rejects them as overlapping), and neighbours whose gap is at most `maxGapSize` bytes
 * join one group — except items of at least `parallelThreshold` bytes, which stay alone.
 *
 * @param ranges - the items' ranges, ascending by start.
 * @param maxGapSize - the largest gap in bytes (`Infinity` allowed) inside a group.
 * @param parallelThreshold - items this large get a group of their own. @default Infinity
 * @returns the groups, ascending.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` for an invalid, unsorted or overlapping range.
 */
export function coalesceRanges(
  ranges: readonly ItemRange[],
  maxGapSize: number,
  parallelThreshold = Number.POSITIVE_INFINITY,
): RangeGroup[] {
  const groups: { start: number; end: number; items: ItemRange[] }[] = [];
  let prev: ItemRange | undefined;
  for (const r of ranges) {
    if (!(Number.isSafeInteger(r.start) && Number.isSafeInteger(r.end) && r.start >= 0 && r.end >= r.start)) {
      throw invalid(`Invalid range: ${r.start}-${r.end}`);
    }
    if (r.end === r.start) continue;
    if (prev && r.start === prev.start && r.end === prev.end) continue;
    if (prev && r.start < prev.end) {
      throw invalid(
        `${r.start < prev.start ? "Unsorted" : "Overlapping"} ranges: ${prev.start}-${prev.end} and ${r.start}-${r.end}`,
      );
    }
    const last = groups.at(-1);
    const alone = (x: ItemRange) => x.end - x.start >= parallelThreshold;
    if (last && prev && r.start - prev.end <= maxGapSize && !alone(r) && !alone(prev)) {
      last.items.push(r);
      last.end = r.end;
    } else {
      groups.push({ start: r.start, end: r.end, items: [r] });
    }
    prev = r;
  }
  return groups;
}

/**
 * Reads the items of one object through as few ranged GETs as possible, as s3torchconnector's
 * `DCPOptimizedS3Reader`: each group of neighbouring items (see {@link coalesceRanges}) is one
 * GET, streamed; gap bytes are skipped, and each item's bytes are collected into one buffer.
 * Access is forward-only across items — the current item or the next one — with any position
 * inside the current item. Memory: one item plus one network chunk.
 *
 * Items of at least `parallelThreshold` bytes are not streamed: any range inside one is fetched
 * by its own ranged GET, straight into the caller's buffer (`readInto`), so a reader that splits
 * a large item into pieces downloads them in parallel.
 */
export class DCPOptimizedS3Reader implements FileReadStream {
  readonly #serial = new Serialized();
  readonly #groups: RangeGroup[];
  readonly #items: { item: ItemRange; group: number }[];
  readonly #large: ItemRange[];
  #current = -1;
  #buffer: Uint8Array | undefined;
  #body: CheckedBody | undefined;
  #bodyGroup = -1;
  #position = 0;
  #leftover: Uint8Array | undefined;

  /**
   * @param ref - the object.
   * @param ranges - the items this reader will be asked for, ascending.
   * @param maxGapSize - see {@link coalesceRanges}.
   * @param parallelThreshold - see {@link coalesceRanges}. @default 16 MiB
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` when the bucket or key is empty ("Bucket
   * should be specified" / "Key should be specified"), the ranges are empty (after dropping
   * zero-length ones), invalid, unsorted or overlapping, or `maxGapSize` is negative.
   */
  constructor(
    private readonly ref: S3ObjectRef,
    ranges: readonly ItemRange[],
    maxGapSize: number = DEFAULT_MAX_GAP_SIZE,
    parallelThreshold: number = DEFAULT_PARALLEL_THRESHOLD,
  ) {
    assertObjectRef(ref);
    if (typeof maxGapSize !== "number" || Number.isNaN(maxGapSize) || maxGapSize < 0) {
      throw invalid(`Expected maxGapSize to be a number >= 0, got ${String(maxGapSize)}`);
    }
    if (ranges.length === 0) throw invalid("item ranges must be a non-empty list");
    this.#groups = coalesceRanges(ranges, maxGapSize, parallelThreshold);
    if (this.#groups.length === 0) throw invalid("No non-empty ranges to read (all ranges were length 0)");
    this.#large = this.#groups.flatMap((g) => g.items).filter((r) => r.end - r.start >= parallelThreshold);
    this.#items = this.#groups.flatMap((g, group) =>
      g.items.filter((item) => !this.#large.includes(item)).map((item) => ({ item, group })),
    );
  }

  /** The groups this reader fetches, one GET each. */
  get groups(): readonly RangeGroup[] {
    return this.#groups;
  }

  /** @inheritDoc The end of the last item (the reader knows nothing beyond its ranges). */
  async size(): Promise<number> {
    return this.#groups.at(-1)!.end;
  }

  /** @inheritDoc Streamed items are read one call at a time, in call order. */
  async read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    assertReadRange(offset, length);
    if (this.#isLarge(offset, offset + length)) return getRange(this.ref, offset, offset + length, signal);
    return this.#serial.run(() => this.#read(offset, length, signal));
  }

  /** @inheritDoc Inside a large item: one ranged GET into `target`, concurrently with other calls. */
  async readInto(offset: number, target: Uint8Array, signal?: AbortSignal): Promise<void> {
    assertReadRange(offset, target.byteLength);
    throwIfAborted(signal);
    if (this.#isLarge(offset, offset + target.byteLength))
      return getRangeInto(this.ref, offset, target, signal);
    target.set(await this.read(offset, target.byteLength, signal));
  }

  /** Whether `[start, end)` lies inside an item read with independent ranged GETs. */
  #isLarge(start: number, end: number): boolean {
    const item = this.#large.find((r) => start >= r.start && end <= r.end);
    return item !== undefined && end > start;
  }

  async #read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    throwIfAborted(signal);
    if (length === 0) return new Uint8Array(0);
    const index = this.#findItem(offset, offset + length);
    if (index !== this.#current) {
      this.#buffer = await this.#loadItem(index, signal);
      this.#current = index;
    }
    const { item } = this.#items[index]!;
    return this.#buffer!.subarray(offset - item.start, offset - item.start + length);
  }

  #findItem(start: number, end: number): number {
    const cur = this.#items[this.#current];
    const inside = (r: ItemRange) => start >= r.start && end <= r.end;
    if (cur && inside(cur.item)) return this.#current;
    const where = `Range ${start}-${end}`;
    if (cur && start < cur.item.end) {
      throw invalid(
        `${FIND_ITEM_ERROR_PREFIX}${where} not contained in current item ${cur.item.start}-${cur.item.end}`,
      );
    }
    const next = this.#items[this.#current + 1];
    if (!next) {
      throw invalid(
        `${FIND_ITEM_ERROR_PREFIX}${where} not contained in last item with range ${cur?.item.start}-${cur?.item.end}`,
      );
    }
    if (!inside(next.item)) {
      const current = cur ? `${cur.item.start}-${cur.item.end}` : "none";
      throw invalid(
        `${FIND_ITEM_ERROR_PREFIX}${where} not contained in current item ${current} nor the next item ${next.item.start}-${next.item.end}`,
      );
    }
    return this.#current + 1;
  }

  async #loadItem(index: number, signal?: AbortSignal): Promise<Uint8Array> {
    const { item, group } = this.#items[index]!;
    if (group !== this.#bodyGroup) {
      this.#body?.destroy();
      const g = this.#groups[group]!;
      this.#body = await getChecked(this.ref, g.start, g.end, signal);
      this.#bodyGroup = group;
      this.#position = g.start;
      this.#leftover = undefined;
    }
    const out = new Uint8Array(item.end - item.start);
    let filled = 0;
    while (filled < out.byteLength) {
      throwIfAborted(signal);
      let chunk = this.#leftover ?? (await this.#body!.next());
      this.#leftover = undefined;
      if (!chunk) {
        throw new CheckpointError(
          "TRUNCATED",
          `S3 stream of ${this.ref.uri} exhausted at position ${this.#position} before reading item ${item.start}-${item.end}`,
        );
      }
      const chunkStart = this.#position;
      this.#position += chunk.byteLength;
      if (this.#position <= item.start) continue; // gap bytes
      if (chunkStart < item.start) chunk = chunk.subarray(item.start - chunkStart);
      const take = Math.min(chunk.byteLength, out.byteLength - filled);
      out.set(chunk.subarray(0, take), filled);
      filled += take;
      if (take < chunk.byteLength) {
        this.#leftover = chunk.subarray(take);
        this.#position -= this.#leftover.byteLength;
      }
    }
    if (index === this.#items.length - 1 || this.#items[index + 1]!.group !== group) {
      if ((await this.#body!.next()) !== undefined) {
        throw new CheckpointError(
          "TRUNCATED",
          `Expected the GET of ${this.ref.uri} to end at ${item.end}, it sent more`,
        );
      }
    }
    return out;
  }

  /** @inheritDoc */
  async close(): Promise<void> {
    this.#body?.destroy();
    this.#body = undefined;
    this.#buffer = undefined;
    this.#leftover = undefined;
  }
}
