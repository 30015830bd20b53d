import { CheckpointError } from "@dcpjs/core";
import { assertReadRange, type CoalesceRule, type FileReadStream, throwIfAborted } from "@dcpjs/core/extend";
import { assertObjectRef, getRange, getRangeInto, type S3ObjectRef } from "../ranged-get.js";

/** The largest gap between two items that still shares one GET when none is given: 32 MiB. */
export const DEFAULT_MAX_GAP_SIZE = 32 * 1024 * 1024;
/**
 * Items at least this large are not coalesced: any part of them is fetched by its own ranged
 * GET, so the pieces of one large item download in parallel. @default 16 MiB
 */
export const DEFAULT_PARALLEL_THRESHOLD = 16 * 1024 * 1024;
/** The size of each ranged GET into a large item: the reader constructor's `pieceBytes` (AWS's guidance: 8–16 MiB). */
export const RANGE_GET_BYTES = 8 * 1024 * 1024;
/**
 * The longest run of neighbouring items one GET fetches (its first byte to its last, gaps
 * included): each run is staged whole by the reader, so this bounds a run's memory. 32 MiB.
 */
export const MAX_RUN_BYTES = 32 * 1024 * 1024;

/**
 * s3torchconnector's DCP-optimized coalescing as the read scheduler's rule: items under
 * `parallelThreshold` at most `maxGapSize` apart share one GET (up to {@link MAX_RUN_BYTES});
 * larger items are alone, fetched in {@link RANGE_GET_BYTES} pieces.
 * @param maxGapSize - the largest gap in bytes inside one GET (`Infinity` allowed).
 * @param parallelThreshold - items this large get a GET of their own per piece.
 */
export function dcpOptimizedRule(maxGapSize: number, parallelThreshold: number): CoalesceRule {
  return { smallItemBytes: parallelThreshold, gapBytes: maxGapSize, batchBytes: MAX_RUN_BYTES };
}

/** A read run's byte range `[start, end)`, as s3torchconnector's `ItemRange`. */
export interface RunRange {
  /** First byte, inclusive. */
  readonly start: number;
  /** Last byte, exclusive. */
  readonly end: number;
}

function invalid(message: string): CheckpointError {
  return new CheckpointError("INVALID_ARGUMENT", message);
}

/**
 * Checks the runs a reader is opened with, as s3torchconnector's `_validate_and_coalesce_ranges`
 * checks its item ranges: zero-length runs are dropped, identical ones merged; unsorted or
 * overlapping ones refused. Nothing is coalesced here: the read scheduler made the runs.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` for an invalid, unsorted or overlapping run.
 */
function checkedRuns(runs: readonly RunRange[]): RunRange[] {
  const out: RunRange[] = [];
  for (const r of runs) {
    if (!(Number.isSafeInteger(r.start) && Number.isSafeInteger(r.end) && r.start >= 0 && r.end >= r.start)) {
      throw invalid(`Invalid range: ${r.start}-${r.end}`);
    }
    const prev = out.at(-1);
    if (r.end === r.start || (prev && r.start === prev.start && r.end === prev.end)) continue;
    if (prev && r.start < prev.end) {
      throw invalid(
        `${r.start < prev.start ? "Unsorted" : "Overlapping"} ranges: ${prev.start}-${prev.end} and ${r.start}-${r.end}`,
      );
    }
    out.push({ start: r.start, end: r.end });
  }
  return out;
}

/**
 * Reads the runs of one object that the read scheduler made by s3torchconnector's DCP-optimized
 * rule ({@link dcpOptimizedRule}): the reader asks for a run of neighbouring items with one call,
 * which is one ranged GET of the run (gap bytes included), and for a large item's pieces with one
 * call each, one ranged GET each, in parallel. Any call must lie inside one of the runs it was
 * opened with; runs may be read in any order, or not at all. Memory: none of its own (bytes go
 * straight into the caller's buffer with `readInto`).
 */
export class DCPOptimizedS3Reader implements FileReadStream {
  readonly #runs: RunRange[];

  /**
   * @param ref - the object.
   * @param runs - the runs this reader will be asked for, ascending.
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` when the bucket or key is empty ("Bucket
   * should be specified" / "Key should be specified"), the runs are empty (after dropping
   * zero-length ones), invalid, unsorted or overlapping.
   */
  constructor(
    private readonly ref: S3ObjectRef,
    runs: readonly RunRange[],
  ) {
    assertObjectRef(ref);
    if (runs.length === 0) throw invalid("item ranges must be a non-empty list");
    this.#runs = checkedRuns(runs);
    if (this.#runs.length === 0) throw invalid("No non-empty ranges to read (all ranges were length 0)");
  }

  /** The runs this reader fetches, ascending: one GET for each call inside one. */
  get runs(): readonly RunRange[] {
    return this.#runs;
  }

  /** @inheritDoc The end of the last run (the reader knows nothing beyond its runs). */
  async size(): Promise<number> {
    return this.#runs.at(-1)!.end;
  }

  /** @inheritDoc One ranged GET of exactly the range, concurrently with other calls. */
  async read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    assertReadRange(offset, length);
    throwIfAborted(signal);
    if (length === 0) return new Uint8Array(0);
    this.#assertInRun(offset, offset + length);
    return getRange(this.ref, offset, offset + length, signal);
  }

  /** @inheritDoc One ranged GET straight into `target`, concurrently with other calls. */
  async readInto(offset: number, target: Uint8Array, signal?: AbortSignal): Promise<void> {
    assertReadRange(offset, target.byteLength);
    throwIfAborted(signal);
    if (target.byteLength === 0) return;
    this.#assertInRun(offset, offset + target.byteLength);
    return getRangeInto(this.ref, offset, target, signal);
  }

  /** Refuses `[start, end)` unless it lies inside one run (binary search: runs are ascending). */
  #assertInRun(start: number, end: number): void {
    let lo = 0;
    let hi = this.#runs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.#runs[mid]!.start <= start) lo = mid;
      else hi = mid - 1;
    }
    const run = this.#runs[lo]!;
    if (start >= run.start && end <= run.end) return;
    throw invalid(
      `Expected a range inside one of the runs the DCPOptimizedS3Reader of ${this.ref.uri} was opened with, got ${start}-${end}`,
    );
  }

  /** @inheritDoc Nothing to release: every call is a request of its own. */
  async close(): Promise<void> {}
}
