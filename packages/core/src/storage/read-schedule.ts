/**
 * The read scheduler: a pure function from a rank's read items to what each data file is asked
 * for — the stored ranges, the runs read with one call each, the pieces a large stored item is
 * split into, and which runs go straight into their destination. Every decision about coalescing
 * and splitting lives here: a backend states its rule as data in {@link ReadCapabilities} and
 * receives the runs (`createStream(path, "rb", { runs })`), never the ranges to coalesce again.
 *
 * Terms: a *chunk* is DCP's (a saved box of a tensor); a {@link StoredRange} is where one stored
 * item lies in its file; a {@link ReadRun} is neighbouring stored ranges read with one call.
 */

/** A byte range of a file: `[offset, offset + length)`. */
export interface ByteRange {
  /** First byte. */
  readonly offset: number;
  /** Bytes. */
  readonly length: number;
}

/**
 * Which stored items are read together, as data: neighbouring small items — each shorter than
 * `smallItemBytes`, at most `gapBytes` apart — join one run of at most `batchBytes` (its first
 * byte to its last, gaps included), read with one call; a stored item of `smallItemBytes` or more
 * is a run of its own, read in pieces of {@link ReadCapabilities.pieceBytes}. s3torchconnector's
 * DCP-optimized reader is this rule with `maxGapSize` as `gapBytes` and `parallelThreshold` as
 * `smallItemBytes` (see `S3ReaderConstructor.dcpOptimized`).
 */
export interface CoalesceRule {
  /** Stored items shorter than this (bytes) are small: coalesced, and read with one call. `Infinity`: every item. */
  readonly smallItemBytes: number;
  /** The largest gap (bytes) between two neighbours of one run; `Infinity` allowed. */
  readonly gapBytes: number;
  /** The longest run of small items (bytes, gaps included): bounds the memory one run is staged in. */
  readonly batchBytes: number;
}

/**
 * What a backend's read streams are good at: one typed flags object (as unstorage's driver
 * flags), read by the scheduler and the reader, never by a branch on the backend's type.
 */
export interface ReadCapabilities {
  /** The coalescing rule: which neighbouring stored items one call reads ({@link CoalesceRule}). */
  readonly coalesce: CoalesceRule;
  /**
   * Largest single read (`readInto`) of a stored item of at least `coalesce.smallItemBytes`: such
   * an item is read in pieces of this size (in parallel, `piecesInFlight` at once).
   */
  readonly pieceBytes: number;
  /** Pieces of one file in flight at once. */
  readonly piecesInFlight: number;
  /**
   * Streams read one range into several buffers with one call (`readvInto`, a scatter read): a
   * run of several stored items that all land in place is read straight into their destinations.
   */
  readonly scatterReads: boolean;
  /**
   * How many more times a run whose bytes failed their checksum is requested (through a fresh
   * random-access stream): > 0 where a new request can bring intact bytes (damage in transit, as
   * over HTTP), 0 where a second read returns the same bytes (a local disk).
   */
  readonly rereadsOnMismatch: number;
}

/**
 * The capabilities of a local disk, and the defaults of any field a backend leaves out: small
 * items (< 1 MiB) 64 KiB apart coalesced into reads of up to 8 MiB; large items in pieces of
 * 32 MiB (large local reads are cheapest in pieces this size: see docs/benchmarks.md), 4 in flight
 * (libuv's default thread pool); no scatter reads (`LocalFileSystem` declares them); no rereads.
 */
export const DEFAULT_READ_CAPABILITIES: ReadCapabilities = {
  coalesce: { smallItemBytes: 1024 * 1024, gapBytes: 64 * 1024, batchBytes: 8 * 1024 * 1024 },
  pieceBytes: 32 * 1024 * 1024,
  piecesInFlight: 4,
  scatterReads: false,
  rereadsOnMismatch: 0,
};

/**
 * A backend's capabilities with every missing field from {@link DEFAULT_READ_CAPABILITIES}: the one
 * place fallbacks are filled in.
 * @param declared - what the backend declares, if anything.
 */
export function resolveReadCapabilities(declared: Partial<ReadCapabilities> | undefined): ReadCapabilities {
  return { ...DEFAULT_READ_CAPABILITIES, ...declared };
}

/** Where one read item's saved chunk lies, as the scheduler needs it. */
export interface ItemLocation {
  /** The data file, relative to the checkpoint. */
  readonly relativePath: string;
  /** The stored item's first byte in the file. */
  readonly offset: number;
  /** The stored item's bytes. */
  readonly length: number;
  /** Identifies the saved chunk: items with one key read one stored item. */
  readonly key: string;
}

/** Where one stored item (or the part of it that is read) lies in its file, and the read items it serves. */
export interface StoredRange<T> extends ByteRange {
  /** The read items (one or more: several local shards may need one saved chunk). */
  readonly items: readonly T[];
}

/** Stored ranges read with one call (a large stored item: in pieces): one coalesced fetch. */
export interface ReadRun<T, D = unknown> extends ByteRange {
  /** The run's range: its first stored range's offset to its last one's end (gaps included). */
  readonly offset: number;
  readonly length: number;
  /** The stored ranges, ascending. */
  readonly ranges: readonly StoredRange<T>[];
  /**
   * `direct`: every stored range read straight into its destination's memory (one: `readInto`
   * in pieces; several: one scatter read); `staged`: read into a staging buffer, then verified and
   * copied (or decoded) into each destination.
   */
  readonly placement: "direct" | "staged";
  /** For a `direct` run: where each stored range lands, as the `direct` callback of {@link scheduleReads} gave it. */
  readonly targets?: readonly D[];
  /**
   * The pieces the run is read in, relative to the run's offset, ascending: one for a run of small
   * items (one call), `pieceBytes` each for a large stored item.
   */
  readonly pieces: readonly ByteRange[];
}

/** Everything one data file is asked for. */
export interface FileReadSchedule<T, D = unknown> {
  /** The data file, relative to the checkpoint. */
  readonly relativePath: string;
  /** The runs, in file order: handed to the backend (`createStream(path, "rb", { runs })`). */
  readonly runs: readonly ReadRun<T, D>[];
}

/**
 * Plans a rank's reads: items grouped by data file (files in first-seen order) and by stored item,
 * in offset order; neighbouring small stored items gathered into runs by `capabilities.coalesce`;
 * a run whose stored ranges all have a target (`direct`) marked for a straight read into them —
 * a run of several only where the backend has scatter reads; a large stored item's run split
 * into pieces of `pieceBytes`.
 *
 * @param items - the rank's read items.
 * @param locate - where an item's stored chunk is.
 * @param direct - where a stored range (with the items that read it) may be read straight to
 * (e.g. its destination's memory), or undefined; asked at most once per stored range.
 * @param capabilities - the backend's (see {@link resolveReadCapabilities}).
 * @returns one schedule per data file.
 */
export function scheduleReads<T, D>(
  items: readonly T[],
  locate: (item: T) => ItemLocation,
  direct: (range: StoredRange<T>) => D | undefined,
  capabilities: ReadCapabilities,
): FileReadSchedule<T, D>[] {
  // Per file, the items and their locations side by side (no wrapper object per item).
  const byFile = new Map<string, { items: T[]; locations: ItemLocation[] }>();
  for (const item of items) {
    const location = locate(item);
    const file = byFile.get(location.relativePath);
    if (file) {
      file.items.push(item);
      file.locations.push(location);
    } else byFile.set(location.relativePath, { items: [item], locations: [location] });
  }
  const rule = capabilities.coalesce;
  return [...byFile].map(([relativePath, { items, locations }]) => {
    const stored: KeyedRange<T>[] = [];
    const order = offsetOrder(locations);
    for (let at = 0; at < locations.length; at++) {
      const i = order ? order[at]! : at;
      const location = locations[i]!;
      const last = stored.at(-1);
      // One key, one stored item at one offset: the offsets first (a key may be built on demand).
      if (last && last.offset === location.offset && last.location.key === location.key)
        last.items.push(items[i]!);
      else
        stored.push({
          location,
          items: [items[i]!],
          offset: location.offset,
          length: location.length,
        });
    }
    const runs = gatherRuns(stored, rule).map((run): ReadRun<T, D> => {
      const offset = run[0]!.offset;
      let end = offset;
      for (const r of run) end = Math.max(end, r.offset + r.length);
      const length = end - offset;
      const targets = run.length === 1 || capabilities.scatterReads ? allTargets(run, direct) : undefined;
      const large = run.length === 1 && !isSmall(run[0]!, rule);
      return {
        offset,
        length,
        // The stored ranges as gathered (their `location` rides along): no copy per stored range.
        ranges: run,
        ...(targets ? { placement: "direct" as const, targets } : { placement: "staged" as const }),
        pieces: large ? splitIntoPieces(length, capabilities.pieceBytes) : [{ offset: 0, length }],
      };
    });
    return { relativePath, runs };
  });
}

/** A stored range while the schedule is built: where its first item reads (its `key` asked only to compare), and its items so far. */
interface KeyedRange<T> extends StoredRange<T> {
  readonly location: ItemLocation;
  readonly items: T[];
}

/**
 * The indexes of `locations` in ascending offset order (a stable sort); undefined when they are in
 * that order already, as a plan's items mostly are (no sort, no index per item).
 */
function offsetOrder(locations: readonly ItemLocation[]): number[] | undefined {
  for (let i = 1; i < locations.length; i++)
    if (locations[i]!.offset < locations[i - 1]!.offset)
      return Array.from({ length: locations.length }, (_, j) => j).sort(
        (a, b) => locations[a]!.offset - locations[b]!.offset || a - b,
      );
  return undefined;
}

/** Whether a stored range is small under `rule` (coalesced, read with one call). */
function isSmall(range: ByteRange, rule: CoalesceRule): boolean {
  return range.length < rule.smallItemBytes;
}

/** Every stored range's target, or undefined as soon as one has none. */
function allTargets<T, D>(
  run: readonly StoredRange<T>[],
  direct: (range: StoredRange<T>) => D | undefined,
): D[] | undefined {
  const targets: D[] = [];
  for (const range of run) {
    const target = direct(range);
    if (target === undefined) return undefined;
    targets.push(target);
  }
  return targets;
}

/**
 * Stored ranges (ascending) gathered into runs by `rule` (see {@link CoalesceRule}): a small range
 * joins the run before it when that run's last range is small too, the gap is at most `gapBytes`,
 * the two do not overlap and the run stays within `batchBytes`; any other range starts a run.
 */
function gatherRuns<R extends ByteRange>(ranges: readonly R[], rule: CoalesceRule): R[][] {
  const runs: R[][] = [];
  let runStart = 0;
  let runEnd = 0;
  for (const r of ranges) {
    const last = runs.at(-1);
    if (
      last &&
      isSmall(r, rule) &&
      isSmall(last.at(-1)!, rule) &&
      r.offset >= runEnd &&
      r.offset - runEnd <= rule.gapBytes &&
      r.offset + r.length - runStart <= rule.batchBytes
    ) {
      last.push(r);
    } else {
      runs.push([r]);
      runStart = r.offset;
    }
    runEnd = Math.max(runEnd, r.offset + r.length);
  }
  return runs;
}

/**
 * `[0, length)` cut into pieces of `pieceBytes` (the last shorter); one empty piece for 0.
 * @param length - bytes.
 * @param pieceBytes - the largest piece.
 */
export function splitIntoPieces(length: number, pieceBytes: number): ByteRange[] {
  const pieces: ByteRange[] = [];
  for (let at = 0; at < length; at += pieceBytes)
    pieces.push({ offset: at, length: Math.min(pieceBytes, length - at) });
  return pieces.length > 0 ? pieces : [{ offset: 0, length: 0 }];
}
