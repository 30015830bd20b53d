/**
 * The read scheduler: a pure function from a rank's read items to what each data file is asked
 * for — the item ranges a backend may plan with, the runs read with one call, the pieces a long
 * run is split into, and which runs go straight into their destination. Every decision about
 * coalescing and splitting lives here; backends state what they are good at in
 * {@link ReadCapabilities} and receive the ranges explicitly (`createStream(path, "rb", { ranges })`).
 */

/** A byte range of a file: `[offset, offset + length)`. */
export interface ByteRange {
  /** First byte. */
  readonly offset: number;
  /** Bytes. */
  readonly length: number;
}

/**
 * What a backend's read streams are good at: one typed flags object (as unstorage's driver
 * flags), read by the scheduler and the reader, never by a branch on the backend's type.
 */
export interface ReadCapabilities {
  /**
   * Neighbouring small items are read with one call: items under `smallItemBytes`, at most
   * `gapBytes` apart, up to `batchBytes` per call. `false` when the stream coalesces the item
   * ranges itself (it is then asked for one item per call, in offset order, as s3torchconnector's
   * DCP-optimized reader expects).
   */
  readonly coalesce:
    | { readonly smallItemBytes: number; readonly gapBytes: number; readonly batchBytes: number }
    | false;
  /** Largest single read into a buffer (`readInto`); longer runs are split into pieces of this size. */
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
  /**
   * A stream may be asked for only some of the ranges it was opened with: the ranks of one process
   * then share saved chunks (a chunk another rank read is not read again). `false` for streams that
   * read their ranges strictly in turn, as s3torchconnector's DCP-optimized reader.
   */
  readonly skipsRanges: boolean;
}

/**
 * The capabilities of a local disk, and the defaults of any field a backend leaves out: small
 * items (< 1 MiB) 64 KiB apart coalesced into reads of up to 8 MiB; pieces of 32 MiB (large local
 * reads are cheapest with them, see docs/benchmarks.md), 4 in flight
 * (libuv's default thread pool); no scatter reads (`LocalFileSystem` declares them); no rereads;
 * ranges may be skipped.
 */
export const DEFAULT_READ_CAPABILITIES: ReadCapabilities = {
  coalesce: { smallItemBytes: 1024 * 1024, gapBytes: 64 * 1024, batchBytes: 8 * 1024 * 1024 },
  pieceBytes: 32 * 1024 * 1024,
  piecesInFlight: 4,
  scatterReads: false,
  rereadsOnMismatch: 0,
  skipsRanges: true,
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

/** One stored item and the read items served from it. */
export interface ScheduledChunk<T> {
  /** The read items (one or more: several local shards may need one saved chunk). */
  readonly items: readonly T[];
  /** Its range in the file. */
  readonly offset: number;
  readonly length: number;
}

/** Stored items read with one call (perhaps in pieces). */
export interface ReadRun<T, D = unknown> {
  /** The run's range: its first chunk's offset to its last chunk's end. */
  readonly offset: number;
  readonly length: number;
  /** The chunks, ascending. */
  readonly chunks: readonly ScheduledChunk<T>[];
  /**
   * `direct`: every chunk read straight into its destination's memory (one chunk: `readInto` in
   * pieces; several: one scatter read); `staged`: read into a staging buffer, then verified and
   * copied (or decoded) into each destination.
   */
  readonly placement: "direct" | "staged";
  /** For a `direct` run: where each chunk lands, as the `direct` callback of {@link scheduleReads} gave it. */
  readonly targets?: readonly D[];
  /** The pieces the run is read in, relative to the run's offset, ascending (one when short). */
  readonly pieces: readonly ByteRange[];
}

/** Everything one data file is asked for. */
export interface FileReadSchedule<T, D = unknown> {
  /** The data file, relative to the checkpoint. */
  readonly relativePath: string;
  /** Every stored item's range in the file, ascending and distinct: handed to the backend. */
  readonly ranges: readonly ByteRange[];
  /** The runs, in file order. */
  readonly runs: readonly ReadRun<T, D>[];
}

/**
 * Plans a rank's reads: items grouped by data file (files in first-seen order) and by stored item,
 * in offset order; neighbouring small stored items gathered into runs as `capabilities.coalesce`
 * allows; a run whose chunks all have a target (`direct`) marked for a straight read into them —
 * a run of several chunks only where the backend has scatter reads; runs longer than `pieceBytes`
 * split into pieces.
 *
 * @param items - the rank's read items.
 * @param locate - where an item's stored chunk is.
 * @param direct - where a stored chunk (with the items that read it) may be read straight to
 * (e.g. its destination's memory), or undefined; asked at most once per chunk.
 * @param capabilities - the backend's (see {@link resolveReadCapabilities}).
 * @returns one schedule per data file.
 */
export function scheduleReads<T, D>(
  items: readonly T[],
  locate: (item: T) => ItemLocation,
  direct: (chunk: ScheduledChunk<T>) => D | undefined,
  capabilities: ReadCapabilities,
): FileReadSchedule<T, D>[] {
  const byFile = new Map<string, { location: ItemLocation; item: T }[]>();
  for (const item of items) {
    const location = locate(item);
    const list = byFile.get(location.relativePath);
    if (list) list.push({ location, item });
    else byFile.set(location.relativePath, [{ location, item }]);
  }
  return [...byFile].map(([relativePath, located]) => {
    const sorted = [...located].sort((a, b) => a.location.offset - b.location.offset);
    const chunks: (ScheduledChunk<T> & { key: string; items: T[] })[] = [];
    for (const { location, item } of sorted) {
      const last = chunks.at(-1);
      if (last && last.key === location.key) last.items.push(item);
      else
        chunks.push({ key: location.key, items: [item], offset: location.offset, length: location.length });
    }
    const ranges: ByteRange[] = [];
    for (const c of chunks) {
      const prev = ranges.at(-1);
      if (!prev || prev.offset !== c.offset || prev.length !== c.length)
        ranges.push({ offset: c.offset, length: c.length });
    }
    const runs = gatherRuns(chunks, capabilities).map((run) => {
      const offset = run[0]!.offset;
      const end = run.reduce((e, c) => Math.max(e, c.offset + c.length), offset);
      const length = end - offset;
      const targets = run.length === 1 || capabilities.scatterReads ? allTargets(run, direct) : undefined;
      return {
        offset,
        length,
        chunks: run.map(({ items, offset, length }) => ({ items, offset, length })),
        ...(targets ? { placement: "direct" as const, targets } : { placement: "staged" as const }),
        pieces: splitIntoPieces(length, capabilities.pieceBytes),
      };
    });
    return { relativePath, ranges, runs };
  });
}

/** Every chunk's target, or undefined as soon as one has none. */
function allTargets<T, D>(
  run: readonly ScheduledChunk<T>[],
  direct: (c: ScheduledChunk<T>) => D | undefined,
): D[] | undefined {
  const targets: D[] = [];
  for (const chunk of run) {
    const target = direct(chunk);
    if (target === undefined) return undefined;
    targets.push(target);
  }
  return targets;
}

/** Neighbouring small chunks gathered into runs (see {@link ReadCapabilities.coalesce}); others alone. */
function gatherRuns<C extends ByteRange>(chunks: readonly C[], capabilities: ReadCapabilities): C[][] {
  const rule = capabilities.coalesce;
  if (!rule) return chunks.map((c) => [c]);
  const runs: C[][] = [];
  let runStart = 0;
  let runEnd = 0;
  for (const c of chunks) {
    const last = runs.at(-1);
    const small = c.length < rule.smallItemBytes;
    const lastSmall = last !== undefined && last.at(-1)!.length < rule.smallItemBytes;
    if (
      last &&
      small &&
      lastSmall &&
      c.offset >= runEnd &&
      c.offset - runEnd <= rule.gapBytes &&
      c.offset + c.length - runStart <= rule.batchBytes
    ) {
      last.push(c);
    } else {
      runs.push([c]);
      runStart = c.offset;
    }
    runEnd = Math.max(runEnd, c.offset + c.length);
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
