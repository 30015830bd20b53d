import { randomUUID } from "node:crypto";
import pLimit, { type LimitFunction } from "p-limit";
import {
  CheckpointError,
  ChecksumMismatchError,
  MetadataError,
  NotFoundError,
  throwIfAborted,
} from "../errors.js";
import {
  assertItemBlocks,
  assertRunningChecksums,
  computeChecksum,
  type ItemChecksum,
  itemChecksum,
  runningBefore,
} from "../formats/checksum.js";
import type { ItemExpectation, PayloadLocation } from "../formats/item-format.js";
import { itemFormatOf } from "../formats/item-formats.js";
import { assertCastable, boxCast, castBox } from "../model/cast.js";
import { DTYPE_BYTES, type DType } from "../model/dtype.js";
import { boxCopy, boxSpan, contiguousRun, findChunk, numel } from "../model/geometry.js";
import { stridedCopy } from "../model/strided-copy.js";
import { type Tensor, tensorBytes } from "../model/tensor.js";
import {
  type ChunkStorageMetadata,
  type LoadPlan,
  type Metadata,
  metadataIndexKey,
  type ReadItem,
  type StorageInfo,
} from "../plan/metadata.js";
import type { LoadPlanner } from "../plan/planner.js";
import { assertIntegerInRange } from "../validate.js";
import type { FileReadStream, FileSystemBase } from "./filesystem-base.js";
import { METADATA_FILE, rankMetadataFile } from "./layout.js";
import { LocalFileSystem } from "./local-file-system.js";
import { forEachFile } from "./per-file.js";
import type { ProgressCallback } from "./progress.js";
import { committedRefersTo, readCheckpointMetadata } from "./read-checkpoint-metadata.js";
import {
  type FileReadSchedule,
  type ReadCapabilities,
  type ReadRun,
  resolveReadCapabilities,
  scheduleReads,
} from "./read-schedule.js";
import {
  PROCESS_ID,
  planSharedReads,
  type ReadPlanData,
  SHARED_READ_BYTES,
  SharedChunkReads,
} from "./shared-chunk-reads.js";
import { keepStaging, takeStaging } from "./staging-buffers.js";
import type { StorageReader, StorageSetUp } from "./storage.js";
import {
  castOnWorker,
  checksumsOnWorker,
  copyOnWorker,
  resolveWorkerMinBytes,
  runningChecksumsOnWorker,
  runsOffThread,
  startWorkers,
} from "./worker-pool.js";

/** Runs a reader has in flight per file (read ahead while earlier ones are verified). */
export const READ_AHEAD_CHUNKS = 4;

/** A run read and verified, ready to deliver: each chunk's payload, and what this rank fetched (or the shared chunk's key). */
interface ReadyRun {
  readonly payloads: Uint8Array[];
  readonly fetched?: FetchedChunk;
  readonly shared?: string;
}

/** A fetched run: each chunk's stored bytes and, for a run read in place, the tensors they landed in. */
interface FetchedChunk {
  /** Each chunk's stored bytes, in run order. */
  readonly stored: readonly Uint8Array[];
  /** The staging buffer they lie in, for a staged run (recycled). */
  readonly staging: Uint8Array | undefined;
  /** Each chunk's destination tensor, for a direct run. */
  readonly dests: readonly Tensor[] | undefined;
  /** For a framed item read in place: the checksum its frame records over the payload read. */
  readonly payloadSum?: PayloadLocation;
}

/** Gap bytes between the items of a scatter read land here and are dropped (gaps are ≤ 64 KiB by default). */
const discard = new Uint8Array(1024 * 1024);

/** A framed item's first and last `length − payload` bytes. */
interface ItemFrame {
  readonly head: Uint8Array;
  readonly tail: Uint8Array;
}

/** Framed items whose frames are read ahead of their runs, per file (at most this many frames in memory). */
const FRAMES_AHEAD = 16;

/** Largest frame (stored bytes beyond the payload) read ahead of a framed item's payload: 1 MiB; an item with more is read whole. */
const MAX_FRAME_BYTES = 1024 * 1024;

/** Where a stored chunk read by one item lands in place: the destination tensor and the bytes of it. */
interface DirectTarget {
  readonly bytes: Uint8Array;
  readonly dest: Tensor;
  /** The stored item is framed around these bytes ({@link ItemFormat.payloadFrame}): read its frame first. */
  readonly framed?: true;
}

/**
 * A read item and what it reads of its saved chunk: its storage entry, and the bytes
 * `[start, end)` of the stored item — all of it, or (`first` > 0 or `end` < length) only the
 * checksum blocks the item's box lies in — at `offset` in `relativePath` (the scheduler's
 * `ItemLocation`). `key` names what is read: items with one key are served by one read. Built
 * once per item; the schedule carries it, so nothing is looked up twice.
 */
interface ItemRead {
  readonly item: ReadItem;
  readonly info: StorageInfo;
  /** For a tensor item: its saved chunk and the entry's dtype. */
  readonly saved: { readonly chunk: ChunkStorageMetadata; readonly dtype: DType } | undefined;
  /** The saved chunk's key (`metadataIndexKey`). */
  readonly chunk: string;
  /** What is read: the chunk's key, or for a part, the chunk's key and the part's start. */
  readonly key: string;
  readonly start: number;
  readonly end: number;
  /** The first checksum block read (`start / blockBytes`). */
  readonly first: number;
  /** The data file, and the file range read: `info.offset + start`, `end − start` bytes. */
  readonly relativePath: string;
  readonly offset: number;
  readonly length: number;
}

/** Options of {@link FileSystemReader}. */
export interface FileSystemReaderOptions {
  /** The checkpoint folder (or URI, for another file system). */
  readonly path: string;
  /** The storage backend. @default a {@link LocalFileSystem} */
  readonly fs?: FileSystemBase;
  /** Data files read concurrently by each rank. @default 4 */
  readonly threadCount?: number;
  /** Called after each item is read and verified, with its bytes. */
  readonly onProgress?: ProgressCallback;
  /**
   * Most bytes of saved chunks shared between the ranks of this process (in-process ranks that
   * reshard) held at once; past it a rank reads a chunk for itself. 0 turns sharing off.
   * @default {@link SHARED_READ_BYTES} (256 MiB)
   */
  readonly sharedReadBytes?: number;
  /**
   * The smallest item checksum or box copy (bytes) run on a worker thread rather than the main
   * thread, and the smallest read run of small items whose checksums one worker task computes —
   * where the bytes lie in shared memory: staging buffers of tensor items, and tensors
   * from `emptyTensor`. `Infinity` keeps every checksum and copy on the calling thread.
   * @default {@link WORKER_MIN_BYTES} (1 MiB)
   */
  readonly workerMinBytes?: number;
}

/**
 * Reads a checkpoint through a {@link FileSystemBase}, as DCP's `FileSystemReader`: items grouped
 * by data file and read in offset order, each item's length and CRC verified before use, and
 * each read item's n-d box copied straight into the destination tensor.
 *
 * A rank that needs only some of a saved chunk's 1 MiB checksum blocks (the rows of a row-wise
 * chunk, for a finer row sharding) reads those blocks alone and verifies them against the running
 * CRCs its storage entry records (`StorageInfo.checksumBlocks`): a ranged GET on S3.
 *
 * Ranks of one process (`createLocalProcessGroups`) that need boxes of the same saved chunk —
 * a resharded load — read and verify it once between them (unless their parts add up to less
 * than the chunk): the first reads it, the others copy their boxes from that copy, which is
 * dropped when the last is done.
 *
 * Memory: chunks read straight into their destination need none; others are staged, at most
 * {@link READ_AHEAD_CHUNKS} per file being read (`threadCount` files at once), each the size of
 * its saved chunk; shared chunks count against `sharedReadBytes` for the whole process instead.
 */
export class FileSystemReader implements StorageReader {
  /** The backend. */
  readonly fs: FileSystemBase;
  /** The normalised checkpoint path. */
  protected path: string;
  /** Where each item is, from the metadata. */
  protected storageData: ReadonlyMap<string, StorageInfo> = new Map();
  /** The checkpoint's metadata. */
  protected metadata: Metadata | undefined;
  readonly #threadCount: number;
  readonly #onProgress: ProgressCallback | undefined;
  readonly #sharedReadBytes: number;
  readonly #workerMinBytes: number;
  #loadId: string = randomUUID();
  /**
   * Which committed checkpoint `readMetadata` read from `.metadata`: its save id, or its length
   * and CRC-32 when it has none (PyTorch's); undefined for per-rank metadata and safetensors.
   */
  #committed: string | undefined;
  /** Per read item: what it reads (planning looks at items several times). */
  #locations = new WeakMap<ReadItem, ItemRead>();

  /**
   * @param options - see {@link FileSystemReaderOptions}.
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` when `threadCount` is not an integer ≥ 1,
   * `sharedReadBytes` not an integer ≥ 0, or `workerMinBytes` not a number ≥ 0.
   */
  constructor(options: FileSystemReaderOptions) {
    this.fs = options.fs ?? new LocalFileSystem();
    this.path = this.fs.initPath(options.path);
    this.#threadCount = options.threadCount ?? 4;
    assertIntegerInRange("threadCount", this.#threadCount, 1);
    this.#onProgress = options.onProgress;
    this.#sharedReadBytes = options.sharedReadBytes ?? SHARED_READ_BYTES;
    assertIntegerInRange("sharedReadBytes", this.#sharedReadBytes, 0);
    this.#workerMinBytes = resolveWorkerMinBytes(options.workerMinBytes);
  }

  /** The checkpoint path this reader loads from. */
  get checkpointPath(): string {
    return this.path;
  }

  /** @inheritDoc */
  reset(checkpointId?: string): void {
    if (checkpointId !== undefined) this.path = this.fs.initPath(checkpointId);
    this.#loadId = randomUUID();
  }

  /**
   * @inheritDoc
   * Without `.metadata`, a folder of `*.safetensors` files is read as a checkpoint (see
   * `readSafetensorsMetadata`: Hugging Face's layout, as DCP's `HuggingFaceStorageReader`).
   * @throws {@link CheckpointError} `INCOMPLETE_CHECKPOINT` when there is neither `.metadata` (the
   * save never committed) nor a safetensors file; {@link MetadataError} when it is malformed.
   */
  async readMetadata(signal?: AbortSignal): Promise<Metadata> {
    this.#committed = undefined;
    const { metadata, committed } = await readCheckpointMetadata(this.fs, this.path, signal);
    this.#committed = committed;
    return { ...metadata, storageMeta: { ...metadata.storageMeta, loadId: this.#loadId } };
  }

  /** @inheritDoc */
  setUpStorageReader(metadata: Metadata, _setUp: StorageSetUp): void {
    this.metadata = metadata;
    this.storageData = metadata.storageData;
    this.#locations = new WeakMap();
  }

  /**
   * @inheritDoc Tags the plan with the committed checkpoint this rank read (its save id), so that
   * the coordinator can check every rank read the same one; and with this process
   * ({@link PROCESS_ID}), for shared chunk reads.
   */
  prepareLocalPlan(plan: LoadPlan): LoadPlan {
    const data: ReadPlanData & CommittedPlanData = {
      ...(plan.storageData as object | undefined),
      process: PROCESS_ID,
      ...(this.#committed !== undefined ? { committed: this.#committed } : {}),
    };
    return { ...plan, storageData: data };
  }

  /**
   * @inheritDoc Checks that every rank read the same committed checkpoint, then marks the saved
   * chunks that several ranks of one process read ({@link planSharedReads}): each is then read and
   * verified once for all of them — whole, where their parts (see {@link FileSystemReader}) would
   * add up to at least the whole chunk.
   * @throws {@link CheckpointError} `CHECKPOINT_SUPERSEDED` when ranks read `.metadata` of
   * different saves (one committed between their reads): `load` starts again on every rank.
   */
  prepareGlobalPlan(plans: LoadPlan[]): LoadPlan[] {
    assertOneCommit(this.path, plans);
    for (const plan of plans) this.#locateAll(plan.items);
    const whole = wholeForProcesses(plans, (item) => this.#located(item));
    plans.forEach((plan, rank) => {
      this.#locateAll(plan.items, whole[rank]);
    });
    return planSharedReads(plans, (item) => this.#located(item).key);
  }

  /** Where the bytes of a read item's saved chunk are (looked up once per item). */
  protected storageInfo(item: ReadItem): StorageInfo {
    return this.#located(item).info;
  }

  /** What a read item reads: from the metadata the first time (the whole stored item, unless {@link #locateAll} chose part of it), then from a cache. */
  #located(item: ReadItem): ItemRead {
    let found = this.#locations.get(item);
    if (found) return found;
    const key = metadataIndexKey(item.storageIndex);
    const info = this.storageData.get(key);
    if (!info) {
      throw new MetadataError(
        `Malformed .metadata: no storage entry for "${item.storageIndex.fqn}" at [${item.storageIndex.offset?.join(", ") ?? ""}]`,
      );
    }
    const saved = item.type === "tensor" ? this.#savedChunk(item) : undefined;
    found = wholeRead(item, info, key, saved);
    this.#locations.set(item, found);
    return found;
  }

  /**
   * Decides what each of a plan's items reads: a tensor item that is the plan's only reader of its
   * saved chunk, and needs fewer of its checksum blocks (`StorageInfo.checksumBlocks`) than it has,
   * reads and verifies only those blocks — e.g. the rows of a row-wise saved chunk that a rank with
   * a finer row sharding loads. Other items read their stored item whole.
   */
  #locateAll(items: readonly ReadItem[], wholeChunks?: { has(chunk: string): boolean }): ItemRead[] {
    const reads = items.map((item) => this.#located(item));
    // Only items of more than one checksum block can read part of theirs.
    const readers = new Map<string, number>();
    for (const r of reads) if (r.info.checksumBlocks) readers.set(r.chunk, (readers.get(r.chunk) ?? 0) + 1);
    if (readers.size === 0) return reads;
    return reads.map((r) => {
      if (!r.info.checksumBlocks) return r;
      const whole = wholeRead(r.item, r.info, r.chunk, r.saved);
      const part = readers.get(r.chunk) === 1 && !wholeChunks?.has(r.chunk) ? partOf(whole) : undefined;
      const read = part ?? whole;
      this.#locations.set(r.item, read);
      return read;
    });
  }

  /**
   * @inheritDoc
   * The reads follow {@link scheduleReads} with the backend's {@link ReadCapabilities}; each file is
   * opened with its runs (`createStream(path, "rb", { runs })`).
   * @throws {@link ChecksumMismatchError} naming the fqn when an item's CRC-32 (or CRC-32C) differs;
   * {@link CheckpointError} `TRUNCATED` when a data file is shorter than recorded; `NOT_FOUND`
   * when a data file is missing; `CHECKPOINT_SUPERSEDED` when it is missing because a newer save
   * committed at this id (`.metadata` no longer refers to it).
   */
  async readData(plan: LoadPlan, planner: LoadPlanner, signal?: AbortSignal): Promise<void> {
    throwIfAborted(signal);
    const capabilities = resolveReadCapabilities(this.fs.readCapabilities);
    const shared = (plan.storageData as ReadPlanData | undefined)?.shared;
    // Chunks shared with other ranks of this process are read whole, once (as the coordinator chose).
    const sharedChunks = shared?.readers;
    const reads = this.#locateAll(
      plan.items,
      sharedChunks && { has: (chunk) => sharedChunks[chunk] !== undefined },
    );
    const schedules = scheduleReads(
      reads,
      (r) => r,
      (range) => this.#directTarget(range.items, planner),
      capabilities,
    );
    // Large items will be checked on worker threads: start one while the first reads run.
    if (schedules.some((s) => s.runs.some((run) => this.#checkedOffThread(run)))) startWorkers();
    const sharing = shared ? new SharedChunkReads(shared, this.#sharedReadBytes) : undefined;
    // Chunks this rank reads itself (in place, or with their neighbours) are let go at once, so
    // the other ranks neither read them for it nor keep a copy waiting for it.
    if (sharing)
      for (const schedule of schedules)
        for (const run of schedule.runs)
          if (this.#sharedKey(run, sharing) === undefined)
            for (const chunk of run.ranges) sharing.release(chunk.items[0]!.key);
    try {
      await forEachFile(schedules, this.#threadCount, signal, async (schedule, _, linked) => {
        try {
          await this.#readFile(schedule, capabilities, planner, linked, sharing);
        } catch (error) {
          if (error instanceof NotFoundError) throw await this.#supersededOr(error, schedule.relativePath);
          throw error;
        }
      });
    } finally {
      sharing?.releaseAll();
    }
  }

  /**
   * Why a data file was not found: when the committed `.metadata` no longer refers to it (a newer
   * save committed at this id and removed the files it replaced), a `CHECKPOINT_SUPERSEDED` error
   * that `load` answers by starting again; otherwise (the checkpoint is damaged or gone) `missing`
   * itself.
   */
  async #supersededOr(missing: NotFoundError, relativePath: string): Promise<CheckpointError> {
    if (this.#committed === undefined) return missing;
    if ((await committedRefersTo(this.fs, this.path, relativePath)) !== false) return missing;
    return new CheckpointError(
      "CHECKPOINT_SUPERSEDED",
      `Expected ${relativePath} of the checkpoint at ${this.path} that this load read, but a newer save committed there and removed it (the committed .metadata no longer refers to it)`,
      { cause: missing },
    );
  }

  /**
   * Reads one file's runs in order as a bounded pipeline: up to {@link READ_AHEAD_CHUNKS} runs
   * are read ahead (in their pieces, `piecesInFlight` at once) and verified while earlier ones are
   * delivered. A `direct` run lands in its destination tensor; others go through a (recycled)
   * staging buffer and the n-d box copy — or, for a saved chunk shared with other ranks of this
   * process, through the one copy read for all of them (`sharing`).
   */
  async #readFile(
    schedule: FileReadSchedule<ItemRead, DirectTarget>,
    capabilities: ReadCapabilities,
    planner: LoadPlanner,
    signal: AbortSignal,
    sharing: SharedChunkReads | undefined,
  ): Promise<void> {
    throwIfAborted(signal);
    const { relativePath, runs } = schedule;
    const stream = await this.fs.createStream(this.fs.concatPath(this.path, relativePath), "rb", {
      signal,
      within: this.path,
      runs: schedule.runs,
    });
    const pieces = pLimit(capabilities.piecesInFlight);
    // The frames of framed items read in place are read ahead of their runs (small reads that
    // would otherwise queue behind the payloads in flight and stall each run's payload read).
    const frames = new Map<ReadRun<ItemRead, DirectTarget>, Promise<ItemFrame>>();
    let framesRead = 0;
    const frameAhead = (upTo: number) => {
      for (; framesRead < Math.min(upTo, runs.length); framesRead++) {
        const run = runs[framesRead]!;
        const frame =
          run.targets?.length === 1 && run.targets[0]!.framed && this.#readFrame(stream, run, signal);
        if (!frame) continue;
        frame.catch(() => {}); // surfaced when its run is fetched, or dropped with the file's reads
        frames.set(run, frame);
      }
    };
    /** Reads a run and checks it; a run that fails its check is read again where the backend says it helps. */
    const verified = async (run: ReadRun<ItemRead, DirectTarget>): Promise<ReadyRun> => {
      const frame = frames.get(run);
      frames.delete(run);
      let fetched = await this.#fetchRun(stream, run, pieces, signal, frame);
      for (let attempt = 0; ; attempt++) {
        try {
          return { payloads: await this.#verify(run, fetched, relativePath), fetched };
        } catch (error) {
          // Damage in transit (a backend that says so) is read again; damage at rest is not. A
          // PyTorch archive damaged in its zip structure reads as malformed rather than mismatched.
          const damaged = error instanceof ChecksumMismatchError || error instanceof MetadataError;
          if (!damaged || attempt >= capabilities.rereadsOnMismatch) throw error;
          fetched = await this.#refetch(relativePath, run, pieces, signal);
        }
      }
    };
    const fetch = (run: ReadRun<ItemRead, DirectTarget>): Promise<ReadyRun> => {
      const key = this.#sharedKey(run, sharing);
      const ready =
        key !== undefined
          ? sharing!
              .get(key, run.length, async () => {
                const { payloads, fetched } = await verified(run);
                // Only a tensor's staging buffer may be kept for reuse (a planner may keep a value's bytes).
                return { payload: payloads[0]!, staging: tensorsOnly(run) ? fetched?.staging : undefined };
              })
              .then((payload) => ({ payloads: [payload], shared: key }))
          : verified(run);
      // A read ahead may fail while an earlier one is awaited: it is surfaced when its turn
      // comes, or settled in `finally`, never left as an unhandled rejection.
      ready.catch(() => {});
      return ready;
    };
    const inFlight: Promise<ReadyRun>[] = [];
    try {
      let next = 0;
      frameAhead(FRAMES_AHEAD);
      while (next < runs.length && inFlight.length < READ_AHEAD_CHUNKS) inFlight.push(fetch(runs[next++]!));
      for (const run of runs) {
        const ready = await inFlight.shift()!;
        frameAhead(next + FRAMES_AHEAD);
        if (next < runs.length) inFlight.push(fetch(runs[next++]!));
        throwIfAborted(signal);
        for (const [i, chunk] of run.ranges.entries()) {
          const copying = this.#deliver(chunk.items, ready.payloads[i]!, ready.fetched?.dests?.[i], planner);
          if (copying) await copying;
          this.#onProgress?.({ bytes: chunk.length, items: 1 });
        }
        if (ready.shared !== undefined) sharing!.release(ready.shared);
        // Decoded values may be views of the staging buffer: only recycle it when it held tensors only.
        if (ready.fetched?.staging && tensorsOnly(run)) keepStaging(ready.fetched.staging);
      }
    } finally {
      await Promise.allSettled(inFlight);
      await Promise.allSettled(frames.values()); // frames read ahead of runs never fetched
      await stream.close();
    }
  }

  /** Whether a run's items will be checked on a worker thread: large, and landing in shared memory (a staging buffer for tensors, or shared destination tensors). */
  #checkedOffThread(run: ReadRun<ItemRead, DirectTarget>): boolean {
    if (run.targets)
      return runsOffThread(this.#workerMinBytes, run.length, ...run.targets.map((t) => t.bytes));
    return run.length >= this.#workerMinBytes && tensorsOnly(run);
  }

  /** The saved chunk a run reads through `sharing` (a lone staged chunk other ranks share), if any. */
  #sharedKey(
    run: ReadRun<ItemRead, DirectTarget>,
    sharing: SharedChunkReads | undefined,
  ): string | undefined {
    if (!sharing || run.placement !== "staged" || run.ranges.length !== 1) return undefined;
    const { key } = run.ranges[0]!.items[0]!;
    return sharing.shares(key) ? key : undefined;
  }

  /**
   * Reads a run: a `direct` run of one chunk straight into its destination (in pieces, in
   * parallel), of several chunks with one scatter read into theirs; a `staged` run into a
   * (recycled) staging buffer, in pieces where the stream has `readInto`.
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` when a backend declares `scatterReads` but
   * its stream has no `readvInto`.
   */
  async #fetchRun(
    stream: FileReadStream,
    run: ReadRun<ItemRead, DirectTarget>,
    pieces: LimitFunction,
    signal: AbortSignal,
    frame?: Promise<ItemFrame>,
  ): Promise<FetchedChunk> {
    const { offset, length } = run;
    const framed = run.targets?.some((t) => t.framed) ?? false;
    if (framed && run.targets!.length === 1) {
      const inPlace = await this.#fetchInPlace(stream, run, run.targets![0]!, pieces, signal, frame);
      if (inPlace) return inPlace;
    }
    // A framed item not read in place (or among others) is staged whole and unframed.
    const targets = framed ? undefined : run.targets;
    if (targets && targets.length > 1) {
      if (!stream.readvInto)
        throw new CheckpointError(
          "INVALID_ARGUMENT",
          "Expected readvInto on the streams of a backend that declares scatterReads, found none",
        );
      const buffers: Uint8Array[] = [];
      let at = offset;
      run.ranges.forEach((chunk, i) => {
        for (let gap = chunk.offset - at; gap > 0; gap -= discard.byteLength)
          buffers.push(discard.subarray(0, Math.min(gap, discard.byteLength)));
        buffers.push(targets[i]!.bytes);
        at = chunk.offset + chunk.length;
      });
      await stream.readvInto(offset, buffers, signal);
      return { stored: targets.map((t) => t.bytes), staging: undefined, dests: targets.map((t) => t.dest) };
    }
    const direct = targets?.[0];
    // Tensor items are staged in shared memory (checked and copied on worker threads), in a kept
    // buffer where one fits; other items in a plain buffer, as decoded values may view it.
    const staging = direct
      ? undefined
      : tensorsOnly(run)
        ? takeStaging(length)
        : Buffer.allocUnsafeSlow(length);
    const bytes = direct ? direct.bytes : staging!.subarray(0, length);
    if (!stream.readInto) {
      bytes.set(await stream.read(offset, length, signal));
    } else {
      const reads = run.pieces.map((p) =>
        pieces(() =>
          stream.readInto!(offset + p.offset, bytes.subarray(p.offset, p.offset + p.length), signal),
        ),
      );
      // Every piece settles before the run does (its buffer may be recycled); the first failure wins.
      const settled = await Promise.allSettled(reads);
      const failed = settled.find((s) => s.status === "rejected");
      if (failed) throw failed.reason;
    }
    if (direct) return { stored: [bytes], staging: undefined, dests: [direct.dest] };
    const stored = run.ranges.map((c) => bytes.subarray(c.offset - offset, c.offset - offset + c.length));
    return { stored, staging, dests: undefined };
  }

  /**
   * A framed item's frame: its first and last `length − payload` bytes; undefined when that is
   * not between 1 byte and {@link MAX_FRAME_BYTES} (the item is then read whole).
   */
  #readFrame(
    stream: FileReadStream,
    run: ReadRun<ItemRead, DirectTarget>,
    signal: AbortSignal,
  ): Promise<ItemFrame> | undefined {
    const { offset, length } = run;
    const frameBytes = length - run.targets![0]!.bytes.byteLength;
    if (frameBytes <= 0 || frameBytes > MAX_FRAME_BYTES) return undefined;
    const readAt = async (at: number, into: Uint8Array) => {
      if (stream.readInto) await stream.readInto(offset + at, into, signal);
      else into.set(await stream.read(offset + at, into.byteLength, signal));
    };
    const head = new Uint8Array(frameBytes);
    const tail = new Uint8Array(frameBytes);
    return Promise.all([readAt(0, head), readAt(length - frameBytes, tail)]).then(() => ({ head, tail }));
  }

  /**
   * Reads a framed tensor item straight into its destination: its first and last `length −
   * payload` bytes (the frame), then — where the format finds its payload there — the payload into
   * `target`, in pieces; undefined (read it whole instead) where it does not.
   */
  async #fetchInPlace(
    stream: FileReadStream,
    run: ReadRun<ItemRead, DirectTarget>,
    target: DirectTarget,
    pieces: LimitFunction,
    signal: AbortSignal,
    ahead: Promise<ItemFrame> | undefined,
  ): Promise<FetchedChunk | undefined> {
    const read = run.ranges[0]!.items[0]!;
    const frame = itemFormatOf(read.info).payloadFrame!;
    const { offset } = run;
    const payload = target.bytes.byteLength;
    const framed = ahead ?? this.#readFrame(stream, run, signal);
    if (!framed) return undefined;
    const { head, tail } = await framed;
    const readAt = async (at: number, into: Uint8Array) => {
      if (stream.readInto) await stream.readInto(offset + at, into, signal);
      else into.set(await stream.read(offset + at, into.byteLength, signal));
    };
    const expect = expectation(read);
    if (expect.kind !== "tensor") return undefined;
    const fqn = read.item.storageIndex.fqn;
    const at = frame.locate(head, tail, read.info, expect, fqn, whereRead(read.relativePath, read));
    if (!at) return undefined;
    const pieceBytes = run.pieces[0]!.length || payload;
    const reads: Promise<void>[] = [];
    for (let p = 0; p < payload; p += pieceBytes) {
      const part = target.bytes.subarray(p, Math.min(payload, p + pieceBytes));
      reads.push(pieces(() => readAt(at.offset + p, part)));
    }
    // Every piece settles before the run does; the first failure wins.
    const failed = (await Promise.allSettled(reads)).find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
    return { stored: [target.bytes], staging: undefined, dests: [target.dest], payloadSum: at };
  }

  /**
   * Checks every item of a fetched run — length and CRC, or a PyTorch archive's CRC-32s — and
   * returns each item's payload (PyTorch archives unwrapped).
   * @throws {@link ChecksumMismatchError} naming the first damaged item's fqn.
   */
  async #verify(
    run: ReadRun<ItemRead, DirectTarget>,
    fetched: FetchedChunk,
    relativePath: string,
  ): Promise<Uint8Array[]> {
    const together = this.#checkedTogether(run, fetched, relativePath);
    if (together) return together;
    let offThread = false;
    const payloads = run.ranges.map((chunk, i): Uint8Array | Promise<Uint8Array> => {
      const read = chunk.items[0]!;
      const { item, info, first } = read;
      const stored = fetched.stored[i]!;
      const fqn = item.storageIndex.fqn;
      const format = itemFormatOf(info);
      // A framed item read in place is checked by the checksum its frame records over the payload.
      const inPlace = fetched.payloadSum;
      const sum = inPlace?.checksum ?? itemChecksum(info);
      // Built only for a message (a string per item costs as much as a small item's CRC).
      const where = inPlace
        ? () => `${whereRead(relativePath, read)} (${inPlace.what})`
        : () => whereRead(relativePath, read);
      // A zero-copy item is checked by its entry's checksum alone — its running checksums at
      // block ends where it has them (a partial read by those of the blocks it read) — which a
      // worker thread may compute.
      if ((format.zeroCopy || inPlace) && sum) {
        const blocks = inPlace ? undefined : info.checksumBlocks;
        if (!runsOffThread(this.#workerMinBytes, stored.byteLength, stored)) {
          assertItemBlocks(sum, blocks, first, stored, fqn, where);
          return stored;
        }
        offThread = true;
        const checked = runningChecksumsOnWorker(
          sum.algorithm,
          stored,
          blocks?.blockBytes ?? Number.POSITIVE_INFINITY,
          runningBefore(blocks, first),
        ).then((running) => {
          assertRunningChecksums(sum, blocks, first, running, fqn, where);
          return stored;
        });
        // Surfaced by Promise.all below — or dropped when a later item fails first, synchronously.
        checked.catch(() => {});
        return checked;
      }
      return format.unframe(stored, info, expectation(read), fqn, where());
    });
    return offThread ? Promise.all(payloads) : (payloads as Uint8Array[]);
  }

  /**
   * Checks a run of several small zero-copy items with one worker task (their CRCs, one round
   * trip), when the run is at least `workerMinBytes` and every item lies in shared memory and is
   * read whole with one checksum algorithm; otherwise undefined (checked item by item).
   * @throws {@link ChecksumMismatchError} naming the first damaged item's fqn (the promise rejects).
   */
  #checkedTogether(
    run: ReadRun<ItemRead, DirectTarget>,
    fetched: FetchedChunk,
    relativePath: string,
  ): Promise<Uint8Array[]> | undefined {
    if (run.ranges.length < 2 || !runsOffThread(this.#workerMinBytes, run.length, ...fetched.stored))
      return undefined;
    const sums: ItemChecksum[] = [];
    for (const chunk of run.ranges) {
      const { info } = chunk.items[0]!;
      const sum = itemChecksum(info);
      // Items with running checksums (longer than a block) are checked block by block, alone.
      if (!sum || info.checksumBlocks || !itemFormatOf(info).zeroCopy) return undefined;
      if (sums.length > 0 && sum.algorithm !== sums[0]!.algorithm) return undefined;
      sums.push(sum);
    }
    return checksumsOnWorker(sums[0]!.algorithm, fetched.stored).then((values) => {
      run.ranges.forEach((chunk, i) => {
        const read = chunk.items[0]!;
        const where = () => whereRead(relativePath, read);
        assertRunningChecksums(sums[i]!, undefined, 0, [values[i]!], read.item.storageIndex.fqn, where);
      });
      return fetched.stored as Uint8Array[];
    });
  }

  /** Reads a run again through a fresh random-access stream (a new request), after its bytes failed their checksum. */
  async #refetch(
    relativePath: string,
    run: ReadRun<ItemRead, DirectTarget>,
    pieces: LimitFunction,
    signal: AbortSignal,
  ): Promise<FetchedChunk> {
    const stream = await this.fs.createStream(this.fs.concatPath(this.path, relativePath), "rb", {
      signal,
      within: this.path,
      access: "random",
    });
    try {
      return await this.#fetchRun(stream, run, pieces, signal);
    } finally {
      await stream.close();
    }
  }

  /**
   * The destination bytes when a chunk is read by one item, whole, into a contiguous run of its
   * destination — a framed item's too (its frame is read before its payload).
   */
  #directTarget(group: readonly ItemRead[], planner: LoadPlanner): DirectTarget | undefined {
    const { item, info, saved, start, end } = group[0]!;
    if (group.length !== 1 || item.type !== "tensor" || !saved) return undefined;
    const format = itemFormatOf(info);
    const payload = numel(saved.chunk.sizes) * DTYPE_BYTES[saved.dtype];
    // A framed item whose payload may be the tensor's bytes as they are: its frame is read first.
    const framed =
      !format.zeroCopy && format.payloadFrame !== undefined && payload >= format.payloadFrame.minBytes;
    if ((!format.zeroCopy && !framed) || end - start < info.length) return undefined; // framed: unframed first; part: whole blocks
    const sizes = saved.chunk.sizes;
    if (item.lengths.some((l, d) => l !== sizes[d] || item.storageOffsets[d] !== 0)) return undefined;
    const dest = planner.resolveTensor(item);
    if (dest.dtype !== saved.dtype) return undefined; // cast on delivery
    const run = contiguousRun(dest.shape, item.destOffsets, item.lengths);
    if (!run) return undefined;
    const elementBytes = DTYPE_BYTES[dest.dtype];
    return {
      bytes: tensorBytes(dest).subarray(run.start * elementBytes, (run.start + run.count) * elementBytes),
      dest,
      ...(framed ? { framed: true as const } : {}),
    };
  }

  /**
   * Hands a verified chunk to the planner: values decoded, tensor boxes copied (unless read in
   * place into `dest`) — on a worker thread where both sides lie in shared memory.
   */
  #deliver(
    group: readonly ItemRead[],
    bytes: Uint8Array,
    dest: Tensor | undefined,
    planner: LoadPlanner,
  ): Promise<void> | undefined {
    let copies: Promise<void>[] | undefined;
    for (const { item, saved, start } of group) {
      if (item.type === "bytes") {
        planner.loadBytes(item, bytes);
        continue;
      }
      if (dest) {
        planner.commitTensor(item, dest);
        continue;
      }
      const target = planner.resolveTensor(item);
      if (target.dtype !== saved!.dtype) {
        const cast = this.#cast(item, saved!, start, bytes, target, planner);
        if (cast) {
          copies ??= [];
          copies.push(cast);
        }
        continue;
      }
      const box = boxCopy(
        saved!.chunk.sizes,
        item.storageOffsets,
        target.shape,
        item.destOffsets,
        item.lengths,
        DTYPE_BYTES[target.dtype],
      );
      if (!box) {
        planner.commitTensor(item, target);
        continue;
      }
      // `bytes` start at byte `start` of the stored chunk when only some of its blocks were read.
      const copy = start === 0 ? box : { ...box, srcBase: box.srcBase - start };
      const into = tensorBytes(target);
      if (runsOffThread(this.#workerMinBytes, copy.bytes, bytes, into)) {
        const copied = copyOnWorker(bytes, into, copy).then(() => planner.commitTensor(item, target));
        copied.catch(() => {}); // surfaced by Promise.all below, or dropped when a later item throws first
        copies ??= [];
        copies.push(copied);
        continue;
      }
      stridedCopy(bytes, into, copy);
      planner.commitTensor(item, target);
    }
    return copies && Promise.all(copies).then(() => {});
  }

  /**
   * Delivers a tensor item's box into a target of another dtype, cast as torch's `copy_` does
   * (model/cast.ts) — on a worker thread where both sides lie in shared memory and the box is at
   * least `workerMinBytes` of the target; returns the worker's promise then.
   */
  #cast(
    item: ReadItem & { type: "tensor" },
    saved: NonNullable<ItemRead["saved"]>,
    start: number,
    bytes: Uint8Array,
    target: Tensor,
    planner: LoadPlanner,
  ): Promise<void> | undefined {
    assertCastable(saved.dtype, target.dtype, item.destIndex.fqn);
    const box = boxCast(saved.chunk.sizes, item.storageOffsets, target.shape, item.destOffsets, item.lengths);
    if (!box) {
      planner.commitTensor(item, target);
      return undefined;
    }
    // `bytes` start at byte `start` of the stored chunk (a whole number of elements: blocks are).
    const cast = start === 0 ? box : { ...box, srcBase: box.srcBase - start / DTYPE_BYTES[saved.dtype] };
    const into = tensorBytes(target);
    if (runsOffThread(this.#workerMinBytes, box.elements * DTYPE_BYTES[target.dtype], bytes, into)) {
      const done = castOnWorker(saved.dtype, bytes, target.dtype, into, cast).then(() =>
        planner.commitTensor(item, target),
      );
      done.catch(() => {}); // surfaced by the caller's Promise.all, or dropped when a later item throws first
      return done;
    }
    castBox(saved.dtype, bytes, target.dtype, into, cast);
    planner.commitTensor(item, target);
    return undefined;
  }

  /** A tensor read item's saved chunk and dtype, from the metadata. */
  #savedChunk(item: ReadItem): NonNullable<ItemRead["saved"]> {
    const entry = this.metadata?.stateDictMetadata.get(item.storageIndex.fqn);
    const offsets = item.storageIndex.offset ?? [];
    const chunk =
      entry?.type === "tensor" ? findChunk(entry.chunks, offsets, item.storageIndex.index) : undefined;
    if (!chunk || entry?.type !== "tensor") {
      throw new MetadataError(
        `Malformed .metadata: no chunk of "${item.storageIndex.fqn}" at [${offsets.join(", ")}]`,
      );
    }
    return { chunk, dtype: entry.properties.dtype };
  }
}

/** What {@link FileSystemReader.prepareLocalPlan} adds to a plan: the committed checkpoint the rank read. */
interface CommittedPlanData {
  readonly committed?: string;
}

/**
 * Checks that every rank planned from the same committed `.metadata` (the tags of
 * `prepareLocalPlan`): ranks that read it at different moments while an overwrite committed would
 * otherwise load a mix of two checkpoints.
 * @throws {@link CheckpointError} `CHECKPOINT_SUPERSEDED` naming the first rank that differs.
 */
function assertOneCommit(path: string, plans: readonly LoadPlan[]): void {
  const seen = plans.map((p) => (p.storageData as CommittedPlanData | undefined)?.committed);
  const other = seen.findIndex((c) => c !== seen[0]);
  if (other > 0) {
    throw new CheckpointError(
      "CHECKPOINT_SUPERSEDED",
      `Expected every rank to load one committed checkpoint at ${path}, but rank 0 read the .metadata of save ${seen[0]} and rank ${other} that of ${seen[other]} (a newer save committed between their reads)`,
    );
  }
}

/**
 * The saved chunks that ranks of one process read whole, once between them, rather than each its
 * part: those two or more of its ranks read, whose parts add up to at least the chunk's length.
 *
 * @param plans - every rank's plan, tagged with its process (`prepareLocalPlan`).
 * @param located - what an item reads on its own.
 * @returns per rank, the whole-chunk keys it reads whole.
 */
function wholeForProcesses(plans: readonly LoadPlan[], located: (item: ReadItem) => ItemRead): Set<string>[] {
  const whole = plans.map(() => new Set<string>());
  const byProcess = new Map<string, Map<string, { ranks: number[]; bytes: number; length: number }>>();
  plans.forEach((plan, rank) => {
    const process = (plan.storageData as ReadPlanData | undefined)?.process;
    if (process === undefined) return;
    let chunks = byProcess.get(process);
    if (!chunks) {
      chunks = new Map();
      byProcess.set(process, chunks);
    }
    for (const item of plan.items) {
      const read = located(item);
      if (read.info.checksumBlocks === undefined) continue; // read whole in any case
      let c = chunks.get(read.chunk);
      if (!c) {
        c = { ranks: [], bytes: 0, length: read.info.length };
        chunks.set(read.chunk, c);
      }
      if (c.ranks.at(-1) !== rank) c.ranks.push(rank);
      c.bytes += read.end - read.start;
    }
  });
  for (const chunks of byProcess.values())
    for (const [chunk, c] of chunks)
      if (c.ranks.length > 1 && c.bytes >= c.length) for (const rank of c.ranks) whole[rank]!.add(chunk);
  return whole;
}

/** Whether every chunk of a run is a tensor's: its staging buffer then holds no decoded value's bytes, so it may lie in shared memory and be kept for reuse. */
function tensorsOnly(run: ReadRun<ItemRead, DirectTarget>): boolean {
  return run.ranges.every((c) => c.items[0]!.item.type === "tensor");
}

/** An item's read of its whole stored item. */
function wholeRead(item: ReadItem, info: StorageInfo, chunk: string, saved: ItemRead["saved"]): ItemRead {
  return {
    item,
    info,
    saved,
    chunk,
    key: chunk,
    start: 0,
    end: info.length,
    first: 0,
    relativePath: info.relativePath,
    offset: info.offset,
    length: info.length,
  };
}

/**
 * The read of only the checksum blocks of its stored item that a tensor item's box lies in, when
 * they are fewer than all; undefined otherwise (read it whole).
 */
function partOf(whole: ItemRead): ItemRead | undefined {
  const { item, info, saved } = whole;
  const blocks = info.checksumBlocks;
  if (!blocks || item.type !== "tensor" || !saved || !itemChecksum(info) || !itemFormatOf(info).zeroCopy)
    return undefined;
  const span = boxSpan(saved.chunk.sizes, item.storageOffsets, item.lengths);
  if (!span) return undefined;
  const elementBytes = DTYPE_BYTES[saved.dtype];
  const first = Math.floor((span.start * elementBytes) / blocks.blockBytes);
  const start = first * blocks.blockBytes;
  const end = Math.min(
    Math.ceil((span.end * elementBytes) / blocks.blockBytes) * blocks.blockBytes,
    info.length,
  );
  if (end - start >= info.length) return undefined;
  return {
    ...whole,
    key: `${whole.chunk}#${start}`,
    start,
    end,
    first,
    offset: info.offset + start,
    length: end - start,
  };
}

/** What a read item's stored payload must be: a value, or a tensor chunk of the metadata's dtype and shape. */
/** Where a read lies, for a message: `file @ offset+length`, and the whole item's range for a part of it. */
function whereRead(relativePath: string, { info, start, end }: ItemRead): string {
  return end - start < info.length
    ? `${relativePath} @ ${info.offset + start}+${end - start} (of the item @ ${info.offset}+${info.length})`
    : `${relativePath} @ ${info.offset}+${info.length}`;
}

function expectation({ item, saved }: ItemRead): ItemExpectation {
  if (item.type === "bytes" || !saved) return { kind: "value" };
  return { kind: "tensor", dtype: saved.dtype, sizes: saved.chunk.sizes };
}
