import { checksumOffload, LocalFileSystem, randomUUID, resolveWorkerMinBytes, startWorkers } from "#platform";
import { CheckpointError, NotFoundError, throwIfAborted } from "../errors.js";
import type { LoadPlan, Metadata, ReadItem, StorageInfo } from "../plan/metadata.js";
import type { LoadPlanner } from "../plan/planner.js";
import { assertIntegerInRange } from "../validate.js";
import type { FileSystemBase } from "./filesystem-base.js";
import { forEachFile } from "./per-file.js";
import type { ProgressCallback } from "./progress.js";
import { committedRefersTo, readCheckpointMetadata } from "./read-checkpoint-metadata.js";
import { deliverPayload, directTarget } from "./read-delivery.js";
import { ReadLocator } from "./read-locate.js";
import { checkedOffThread, READ_AHEAD_RUNS, readRuns } from "./read-pipeline.js";
import { resolveReadCapabilities, scheduleReads } from "./read-schedule.js";
import { assertOneCommit, releaseOwnReads, tagLocalPlan, wholeForProcesses } from "./read-sharing.js";
import { resolveDataFile } from "./reference-paths.js";
import {
  planSharedReads,
  type ReadPlanData,
  SHARED_READ_BYTES,
  SharedChunkReads,
} from "./shared-chunk-reads.js";
import type { StorageReader, StorageSetUp } from "./storage.js";

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
 * Memory: items read straight into their destination need none; others are staged, at most
 * {@link READ_AHEAD_RUNS} runs per file being read (`threadCount` files at once), each the size of
 * its stored items; shared chunks count against `sharedReadBytes` for the whole process instead.
 *
 * The stages: {@link ReadLocator} (what each item reads), `read-sharing.ts` (the sharing plan),
 * {@link scheduleReads}, {@link readRuns} (fetch, verify by the item format, refetch, staging) and
 * {@link deliverPayload}; this class keeps the lifecycle and the orchestration.
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
  /** What each read item reads, for the metadata set up (made on first use). */
  #locator: ReadLocator | undefined;

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
   * Asks each registered checkpoint format in turn ({@link readCheckpointMetadata}): a committed
   * `.metadata` (dcpjs or PyTorch DCP), else PyTorch's per-rank `__{rank}.metadata` files, else a
   * folder of `*.safetensors` files (Hugging Face's layout, as DCP's `HuggingFaceStorageReader`).
   * @throws {@link CheckpointError} `INCOMPLETE_CHECKPOINT` when no format finds its metadata (the
   * save never committed, or the path is wrong); {@link MetadataError} when it is malformed.
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
    this.#locator = undefined;
  }

  /**
   * @inheritDoc Tags the plan with the committed checkpoint this rank read (its save id), so that
   * the coordinator can check every rank read the same one; and with this process
   * (`PROCESS_ID`), for shared chunk reads.
   */
  prepareLocalPlan(plan: LoadPlan): LoadPlan {
    return tagLocalPlan(plan, this.#committed);
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
    const locator = this.#locate;
    const located = plans.map((plan) => locator.locateAll(plan.items));
    const whole = wholeForProcesses(plans, (_, i, rank) => located[rank]![i]!);
    // A rank that reads no chunk whole for others reads what it located above.
    const reads = plans.map((plan, rank) =>
      whole[rank]!.size > 0 ? locator.locateAll(plan.items, whole[rank]) : located[rank]!,
    );
    return planSharedReads(plans, (_, i, rank) => reads[rank]![i]!.key);
  }

  /** Where the bytes of a read item's saved chunk are (looked up once per item). */
  protected storageInfo(item: ReadItem): StorageInfo {
    return this.#locate.located(item).info;
  }

  /** The locator of the metadata set up (`storageData` and `metadata` as they are now). */
  get #locate(): ReadLocator {
    this.#locator ??= new ReadLocator(this.storageData, this.metadata);
    return this.#locator;
  }

  /**
   * @inheritDoc
   * The reads follow {@link scheduleReads} with the backend's `ReadCapabilities`; each file is
   * opened with its runs (`createStream(path, "rb", { runs })`) and read by one
   * {@link readRuns} pipeline; each verified payload is delivered ({@link deliverPayload}).
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
    const reads = this.#locate.locateAll(
      plan.items,
      sharedChunks && { has: (chunk) => sharedChunks[chunk] !== undefined },
    );
    const schedules = scheduleReads(
      reads,
      (r) => r,
      (stored) => directTarget(stored.items, planner),
      capabilities,
    );
    // The schedule holds every item's read now: the locator's map of them goes (made again if asked).
    this.#locator = undefined;
    const offload = checksumOffload(this.#workerMinBytes);
    // Large items will be checked on worker threads: start one while the first reads run.
    if (schedules.some((s) => s.runs.some((run) => checkedOffThread(run, offload)))) startWorkers();
    const sharing = shared ? new SharedChunkReads(shared, this.#sharedReadBytes) : undefined;
    if (sharing) releaseOwnReads(schedules, sharing);
    const context = { fs: this.fs, path: this.path, capabilities, sharing, offload };
    try {
      await forEachFile(schedules, this.#threadCount, signal, async (schedule, _, linked) => {
        try {
          for await (const ready of readRuns(schedule, context, linked)) {
            const { ranges } = ready.run;
            const dests = ready.fetched?.dests;
            for (let i = 0; i < ranges.length; i++) {
              const stored = ranges[i]!;
              const dest = dests?.[i];
              const copying = deliverPayload(
                stored.items,
                ready.payloads[i]!,
                dest,
                planner,
                this.#workerMinBytes,
              );
              if (copying) await copying;
              this.#onProgress?.({ bytes: stored.length, items: 1 });
            }
          }
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
    const { base } = resolveDataFile(this.path, relativePath);
    if (base !== undefined)
      return new CheckpointError(
        "NOT_FOUND",
        `Expected ${relativePath} of the base checkpoint ${base} that the checkpoint at ${this.path} references, found none (was ${base} removed without dcp rm or dcp gc?)`,
        { cause: missing },
      );
    if (this.#committed === undefined) return missing;
    if ((await committedRefersTo(this.fs, this.path, relativePath)) !== false) return missing;
    return new CheckpointError(
      "CHECKPOINT_SUPERSEDED",
      `Expected ${relativePath} of the checkpoint at ${this.path} that this load read, but a newer save committed there and removed it (the committed .metadata no longer refers to it)`,
      { cause: missing },
    );
  }
}
