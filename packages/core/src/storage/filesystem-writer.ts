import pLimit from "p-limit";
import {
  checksumOffload,
  concatBytes,
  contentHashOnWorker,
  emitWarning,
  LocalFileSystem,
  randomUUID,
  resolveWorkerMinBytes,
  runsOffThread,
  startWorkers,
  unrefTimer,
  utf8Bytes,
} from "#platform";
import { CheckpointError, NotFoundError, throwIfAborted } from "../errors.js";
import { type WriteFormat, writeFormatNamed } from "../formats/checkpoint-formats.js";
import { decodeCheckpointMetadata } from "../formats/checkpoint-metadata.js";
import { ITEM_CHECKSUM_ALGORITHM } from "../formats/checksum.js";
import { contentHashOf, loadContentHasher } from "../formats/content-hash.js";
import type { ChecksumOffload, FramedItem, ItemFormat } from "../formats/item-format.js";
import { encodeMetadata as encodeDcpjsMetadata } from "../formats/metadata-codec.js";
import { NATIVE_ITEM_FORMAT } from "../formats/native-item-format.js";
import type { Metadata, SavePlan, StorageMeta, WriteItem, WriteResult } from "../plan/metadata.js";
import { withWriteResults } from "../plan/metadata-builder.js";
import type { SavePlanner } from "../plan/planner.js";
import { savePlanColumns } from "../plan/save-plan-columns.js";
import {
  WriteResultColumnsBuilder,
  writeResultsView,
  writtenFileSizes,
} from "../plan/write-result-columns.js";
import { assertIntegerInRange } from "../validate.js";
import type { FileSystemBase, FileWriteStream } from "./filesystem-base.js";
import { type IncrementalBase, readIncrementalBase, type UnchangedItems } from "./incremental-base.js";
import { compareWithBase } from "./incremental-compare.js";
import {
  dataFileName,
  METADATA_FILE,
  metadataTmpFile,
  rankFilePrefix,
  SAVE_LEASE_RENEW_MS,
  saveLeaseFile,
  saveTagOf,
  saveTagSuffix,
} from "./layout.js";
import { forEachFile } from "./per-file.js";
import {
  columnPlanItems,
  objectPlanItems,
  type PlanItems,
  plannedBytes,
  splitPositionsBySizeAndType,
} from "./plan-items.js";
import type { ProgressCallback } from "./progress.js";
import { readWholeFile } from "./read-whole-file.js";
import { type BaseLease, checkpointName, filesStillReferenced, leaseBase } from "./references.js";
import { ITEM_SUMS_OVERHEAD_BYTES, SmallItemStaging, STAGING_MIN_TASKS } from "./small-item-staging.js";
import type { StorageSetUp, StorageWriter } from "./storage.js";
import { writeWholeFile } from "./write-whole-file.js";

/** Items smaller than this are gathered into one write with their neighbours (bytes). */
export const SMALL_ITEM_BYTES = 1024 * 1024;
/** Most bytes of small items gathered into one (vectored) write. */
export const WRITE_BATCH_BYTES = 8 * 1024 * 1024;

/**
 * Splits a plan's items into `bins` files, as DCP's `_split_by_size_and_type`: with one bin, all
 * items; otherwise bytes items go round-robin (`i % bins`) and tensors, largest first, each to the
 * currently smallest bin. Inside every bin, bytes items come first. Bins may be empty.
 *
 * @param bins - the number of files, ≥ 1.
 * @param items - the plan's items.
 * @returns exactly `bins` lists.
 */
export function splitBySizeAndType(bins: number, items: readonly WriteItem[]): WriteItem[][] {
  const byPosition = splitPositionsBySizeAndType(bins, {
    count: items.length,
    isBytes: (j) => items[j]!.type === "bytes",
    bytes: (j) => plannedBytes(items[j]!),
    item: (j) => items[j]!,
    data: () => new Uint8Array(0),
  });
  return byPosition.map((bucket) => bucket.map((j) => items[j]!));
}

/** Options of {@link FileSystemWriter}. */
export interface FileSystemWriterOptions {
  /** The checkpoint folder (or URI, for another file system); created if missing. */
  readonly path: string;
  /** The storage backend. @default a {@link LocalFileSystem} */
  readonly fs?: FileSystemBase;
  /**
   * Write exactly `threadCount` files per rank (empty ones too) instead of one file per item.
   * @default true
   */
  readonly singleFilePerRank?: boolean;
  /** Files each rank writes concurrently (and, with `singleFilePerRank`, its file count). @default 1 */
  readonly threadCount?: number;
  /** fsync every data file and `.metadata.tmp` before the commit. @default true */
  readonly syncFiles?: boolean;
  /**
   * Replace an existing checkpoint at `path`. The old checkpoint stays loadable until the new
   * `.metadata` replaces it in one atomic rename; its files are removed after that. When false,
   * the save fails with `CHECKPOINT_EXISTS` if `.metadata` exists when it starts or when it
   * commits (an exclusive create: of concurrent saves to one id exactly one commits, and the
   * others remove their files). @default true
   */
  readonly overwrite?: boolean;
  /** Called after each item is written, with its bytes. */
  readonly onProgress?: ProgressCallback;
  /**
   * The on-disk format. `dcpjs`: raw items with a CRC-32 each, msgpack `.metadata`. `torch`:
   * PyTorch DCP's own — every item a `torch.save` archive (zip CRC-32s), a pickled `.metadata` —
   * which `torch.distributed.checkpoint.load` (2.6+) reads. Layout and commit are the same. Any
   * other registered `CheckpointFormat` that encodes `.metadata`, or `ItemFormat` (in dcpjs's
   * `.metadata`), works too.
   * @default "dcpjs"
   */
  readonly format?: "dcpjs" | "torch" | (string & {});
  /**
   * The smallest tensor item (bytes) whose checksum is computed on a worker thread, while it is
   * written, rather than on the main thread — where the tensor lies in shared memory
   * (`emptyTensor`, `asyncSave`'s staged copies) and the format stores items as they are
   * (`zeroCopy`). Also the smallest batch of small dcpjs items (their bytes, and
   * `ITEM_SUMS_OVERHEAD_BYTES` per item) whose CRC-32s and content hashes one worker task computes
   * (`SmallItemStaging`, on the local file system, for a file whose small items weigh
   * `STAGING_MIN_TASKS` times this). `Infinity` keeps every checksum on the
   * calling thread.
   * @default {@link WORKER_MIN_BYTES} (1 MiB)
   */
  readonly workerMinBytes?: number;
  /**
   * How often (ms) each rank renews its save lease (`.save.{saveTag}.lease`, see
   * {@link saveLeaseFile}) while it writes its data files. gc keeps every file of a save whose
   * lease is younger than {@link SAVE_LEASE_EXPIRY_MS}.
   * @default {@link SAVE_LEASE_RENEW_MS} (30 s)
   */
  readonly leaseRenewMs?: number;
}

/** Own data files whose sizes are checked at once before a commit. */
const COMMIT_CHECKS_IN_FLIGHT = 16;

/**
 * Writes a checkpoint through a {@link FileSystemBase}, as DCP's `FileSystemWriter`: files
 * `{prefix}{n}.{saveTag}.distcp` (prefix `__{rank}_`; the save tag is new for every save, so a
 * save never touches another save's files), bytes items first then tensors as raw little-endian
 * bytes, each item's offset, length and CRC-32 recorded, and `.metadata` committed last by
 * writing `.metadata.{saveTag}.tmp` and renaming it over `.metadata` in one atomic step.
 *
 * Memory: large tensor items are written straight from tensor memory; smaller ones than
 * {@link SMALL_ITEM_BYTES} are gathered into writes of at most {@link WRITE_BATCH_BYTES} — in the
 * dcpjs format on the local file system, where they weigh enough for a worker, copied into two
 * shared staging buffers of at most that size per file being written (their CRC-32s and content
 * hashes computed by one worker task per batch, see `SmallItemStaging`); otherwise written by
 * vectored writes from their own memory, or copied into one batch of that size per file on a
 * backend without `writev`. Non-tensor values are encoded into new buffers.
 */
export class FileSystemWriter implements StorageWriter {
  /** The backend. */
  readonly fs: FileSystemBase;
  /** The normalised checkpoint path. */
  protected path: string;
  /** Files per rank and write concurrency. */
  readonly threadCount: number;
  /** Whether to fsync. */
  protected syncFiles: boolean;
  readonly #singleFilePerRank: boolean;
  readonly #overwrite: boolean;
  readonly #onProgress: ProgressCallback | undefined;
  readonly #format: ItemFormat;
  readonly #encodeMetadata: WriteFormat["encodeMetadata"];
  readonly #workerMinBytes: number;
  /** Where the item format may checksum large items (`ItemFormat.frameOnWorker`). */
  readonly #offload: ChecksumOffload;
  readonly #leaseRenewMs: number;
  #saveId: string = randomUUID();
  #rank = 0;
  /** This save's base and the lease on it, for an incremental save ({@link FileSystemWriter.useBase}). */
  #base: { readonly base: IncrementalBase; readonly lease: BaseLease } | undefined;

  /**
   * @param options - see {@link FileSystemWriterOptions}.
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` when `threadCount` is not an integer ≥ 1,
   * `format` names no registered item format (`dcpjs`, `torch`, …), `workerMinBytes` is not a
   * number ≥ 0, or `leaseRenewMs` not a number > 0.
   */
  constructor(options: FileSystemWriterOptions) {
    this.fs = options.fs ?? new LocalFileSystem();
    this.path = this.fs.initPath(options.path);
    this.threadCount = options.threadCount ?? 1;
    assertIntegerInRange("threadCount", this.threadCount, 1);
    this.syncFiles = options.syncFiles ?? true;
    this.#singleFilePerRank = options.singleFilePerRank ?? true;
    this.#overwrite = options.overwrite ?? true;
    this.#onProgress = options.onProgress;
    ({ itemFormat: this.#format, encodeMetadata: this.#encodeMetadata } = writeFormatNamed(
      options.format ?? "dcpjs",
    ));
    this.#workerMinBytes = resolveWorkerMinBytes(options.workerMinBytes);
    this.#offload = checksumOffload(this.#workerMinBytes);
    this.#leaseRenewMs = options.leaseRenewMs ?? SAVE_LEASE_RENEW_MS;
    if (!(this.#leaseRenewMs > 0))
      throw new CheckpointError(
        "INVALID_ARGUMENT",
        `Expected leaseRenewMs to be a number > 0, got ${this.#leaseRenewMs}`,
      );
  }

  /** The checkpoint path this writer saves to. */
  get checkpointPath(): string {
    return this.path;
  }

  /** This save's tag in its file names: 12 hex digits of the save id, new on every `reset`. */
  get saveTag(): string {
    return this.#saveId.replaceAll("-", "").slice(0, 12);
  }

  /** @inheritDoc */
  reset(checkpointId?: string): void {
    if (checkpointId !== undefined) this.path = this.fs.initPath(checkpointId);
    this.#saveId = randomUUID();
    this.#base = undefined;
  }

  /**
   * @inheritDoc
   * Takes a lease on the base (`leaseBase`, so that gc keeps it while this save runs), then reads
   * its `.metadata`; `writeData` then writes only the items whose bytes differ from the base's
   * and `finish` confirms the lease just before the commit.
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` when this writer's format is not dcpjs's
   * (a torch or safetensors checkpoint cannot reference another), or as `readIncrementalBase`
   * (not a sibling, not committed: `NOT_FOUND` naming it).
   */
  async useBase(
    baseId: string,
    options: { readonly unchanged?: UnchangedItems } = {},
    signal?: AbortSignal,
  ): Promise<BaseLease> {
    if (this.#format !== NATIVE_ITEM_FORMAT || this.#encodeMetadata !== encodeDcpjsMetadata)
      throw new CheckpointError(
        "INVALID_ARGUMENT",
        `Expected format "dcpjs" for an incremental save (base), got "${this.#format.name}": only dcpjs checkpoints reference other checkpoints' files`,
      );
    const lease = await leaseBase(this.fs, this.fs.initPath(baseId), this.#saveId, signal);
    try {
      const base = await readIncrementalBase(this.fs, this.path, baseId, options.unchanged, signal);
      this.#base = { base, lease };
    } catch (error) {
      await lease.release();
      throw error;
    }
    return lease;
  }

  /** @inheritDoc */
  setUpStorageWriter(setUp: StorageSetUp): void {
    this.#rank = setUp.rank;
  }

  /**
   * @inheritDoc
   * @throws {@link CheckpointError} `CHECKPOINT_EXISTS` when `.metadata` exists and `overwrite` is false.
   */
  async prepareLocalPlan(plan: SavePlan): Promise<SavePlan> {
    await this.fs.mkdir(this.path);
    if (!this.#overwrite && (await this.fs.exists(this.fs.concatPath(this.path, METADATA_FILE)))) {
      throw new CheckpointError(
        "CHECKPOINT_EXISTS",
        `Checkpoint already exists and overwrite=false: ${this.path}`,
      );
    }
    return plan;
  }

  /** @inheritDoc Gives plan i the file prefix `__{i}_`. */
  prepareGlobalPlan(plans: SavePlan[]): SavePlan[] {
    return plans.map((plan, i) => ({ ...plan, storageData: { prefix: rankFilePrefix(i) } }));
  }

  /**
   * @inheritDoc
   * @throws {@link CheckpointError} from the backend (`IO_ERROR`, …) or `ABORTED` — the first
   * failure in time; a file whose write fails is aborted (removed), this rank's finished files
   * are removed, and the checkpoint is never committed.
   */
  async writeData(plan: SavePlan, planner: SavePlanner, signal?: AbortSignal): Promise<WriteResult[]> {
    throwIfAborted(signal);
    const prefix = plan.storageData?.prefix ?? rankFilePrefix(this.#rank);
    // A plan over columns is read by position (no WriteItem per item); an incremental save
    // compares items with the base as objects.
    const columns = this.#base === undefined ? savePlanColumns(plan) : undefined;
    const planned = columns ? columnPlanItems(columns, planner) : objectPlanItems(plan.items, planner);
    // Large tensors in shared memory will be checksummed on worker threads: start one while the
    // first writes run.
    for (let j = 0; j < planned.count; j++)
      if (
        !planned.isBytes(j) &&
        planned.bytes(j) >= this.#workerMinBytes &&
        this.#checksumOffThread(false, planned.data(j))
      ) {
        startWorkers();
        break;
      }
    // Every dcpjs item records its content hash: the hasher is loaded before any item is framed.
    if (this.#format === NATIVE_ITEM_FORMAT) await loadContentHasher();
    // An incremental save decides which items are unchanged first, and writes only the others.
    const { references, toWrite } = this.#base
      ? await compareWithBase(
          this.#base.base,
          plan.items,
          checkpointName(this.path),
          (item) => planner.resolveData(item),
          (item, data) =>
            this.#checksumOffThread(item.type === "bytes", data)
              ? contentHashOnWorker(data)
              : contentHashOf(data)!,
          signal,
        )
      : { references: [], toWrite: undefined };
    const items = toWrite ? objectPlanItems(toWrite, planner) : planned;
    const buckets = this.#singleFilePerRank
      ? splitPositionsBySizeAndType(this.threadCount, items)
      : Array.from({ length: items.count }, (_, j) => [j]);
    const results = new WriteResultColumnsBuilder(items.count);
    // The lease goes first: gc keeps the files of a save whose lease is live.
    const lease = items.count > 0 ? await this.#takeLease(signal) : undefined;
    const written: string[] = [];
    try {
      let slot = 0;
      const firstSlots = buckets.map((b) => {
        const first = slot;
        slot += b.length;
        return first;
      });
      await forEachFile(buckets, this.threadCount, signal, async (positions, n, linked) => {
        const relativePath = dataFileName(prefix, n, this.saveTag);
        await this.#writeFile(relativePath, positions, items, results, firstSlots[n]!, linked);
        written.push(relativePath);
      });
      await lease?.stop();
    } catch (error) {
      // The save will not commit: remove this rank's finished files too (the failed ones are
      // aborted), then its lease.
      await lease?.stop();
      for (const file of written) await this.#removeQuietly(this.fs.concatPath(this.path, file));
      if (lease) await this.#removeQuietly(lease.path);
      throw error;
    }
    if (columns) return writeResultsView(results.build(columns));
    const plain = results.toResults(toWrite ?? plan.items);
    return references.length > 0 ? [...plain, ...references] : plain;
  }

  /**
   * Writes this rank's save lease and renews it every `leaseRenewMs` until `stop` (which waits
   * for a renewal in flight, so that none lands after it). A failed renewal is a process warning:
   * the commit's own check of the files still guards the save.
   */
  async #takeLease(signal: AbortSignal | undefined): Promise<{ path: string; stop(): Promise<void> }> {
    const path = this.fs.concatPath(this.path, saveLeaseFile(this.saveTag));
    const write = () =>
      writeWholeFile(
        this.fs,
        path,
        [
          utf8Bytes(
            `${JSON.stringify({ saveId: this.#saveId, rank: this.#rank, at: new Date().toISOString() })}\n`,
          ),
        ],
        { sync: false },
      );
    throwIfAborted(signal);
    await write();
    let renewing: Promise<void> | undefined;
    const timer = setInterval(() => {
      renewing ??= write()
        .catch((error) =>
          emitWarning(`dcpjs: could not renew the save lease ${path}`, {
            code: "DCPJS_LEASE",
            detail: String(error),
          }),
        )
        .finally(() => {
          renewing = undefined;
        });
    }, this.#leaseRenewMs);
    unrefTimer(timer);
    return {
      path,
      stop: async () => {
        clearInterval(timer);
        await renewing;
      },
    };
  }

  /**
   * Writes one file: large items straight from tensor memory (the CRC-32 and content hash computed
   * while the write is in flight: on a worker thread where the item lies in shared memory, else on
   * this thread once its write has started), small ones gathered into one write of up to
   * {@link WRITE_BATCH_BYTES} so that a state dict of many small tensors costs few writes, not one
   * per item. Where the file's small items weigh enough for a worker (see
   * {@link SmallItemStaging}) and the format is dcpjs's, they are copied into shared staging
   * buffers whose CRCs and hashes one worker task per batch computes while the batch is written;
   * otherwise they are framed here and gathered into a vectored write from their own memory (one
   * buffer where the backend has no `writev`).
   */
  async #writeFile(
    relativePath: string,
    positions: readonly number[],
    items: PlanItems,
    results: WriteResultColumnsBuilder,
    firstSlot: number,
    signal: AbortSignal,
  ): Promise<void> {
    throwIfAborted(signal);
    const staging = this.#stagingFor(positions, items);
    const stream: FileWriteStream = await this.fs.createStream(
      this.fs.concatPath(this.path, relativePath),
      "wb",
      { signal },
    );
    const fileId = results.fileId(relativePath);
    /** The next result's slot: each item's result, in order, is filled once its checksum is known. */
    let slot = firstSlot;
    /** Results whose checksums a worker computes: filled in once every item is written. */
    const later: Promise<void>[] = [];
    let batch: Uint8Array[] = [];
    let batchBytes = 0;
    /** The staged items of the batch being gathered (positions), and where in the file the batch starts. */
    let staged: number[] = [];
    let stagedAt = 0;
    // One write may be in flight while the next batch is gathered and checksummed.
    let pending: Promise<void> | undefined;
    /** Issues a write once the one in flight is done (settles when issued: see `pending`). */
    const write = async (bytes: Uint8Array | Uint8Array[], total: number): Promise<void> => {
      await pending;
      // A vectored write from the items' own memory where the backend has one; else one copy.
      pending = !Array.isArray(bytes)
        ? stream.write(bytes)
        : bytes.length === 1
          ? stream.write(bytes[0]!)
          : stream.writev
            ? stream.writev(bytes)
            : stream.write(concatBytes(bytes, total));
      pending.catch(() => {}); // surfaced where it is awaited
    };
    const flush = async () => {
      if (batchBytes > 0) {
        const parts = batch;
        const bytes = batchBytes;
        batch = [];
        batchBytes = 0;
        await write(parts, bytes);
      }
      if (staging && staging.items > 0) {
        const taken = staging.take();
        const batchItems = staged;
        const at = stagedAt;
        const batchSlot = slot - batchItems.length;
        staged = [];
        await write(taken.bytes, taken.bytes.byteLength);
        taken.hold(pending!);
        later.push(
          taken.sums.then(({ crcs, hashes }) => {
            let start = 0;
            for (let i = 0; i < batchItems.length; i++) {
              const end = taken.ends[i]!;
              results.setSums(
                batchSlot + i,
                batchItems[i]!,
                fileId,
                at + start,
                end - start,
                ITEM_CHECKSUM_ALGORITHM,
                crcs[i]!,
                hashes,
                32 * i,
              );
              start = end;
            }
          }),
        );
        later.at(-1)!.catch(() => {}); // surfaced where it is awaited
      }
    };
    /** The file's fsync, once every write has been issued and done. */
    let syncing: Promise<void> | undefined;
    try {
      let offset = stream.tell();
      for (const j of positions) {
        throwIfAborted(signal);
        const data = items.data(j);
        const length = data.byteLength;
        if (staging && length < SMALL_ITEM_BYTES && length <= staging.capacity) {
          // A small item of the native format: copied into a staging buffer, summed on a worker.
          if (batchBytes > 0 || !staging.fits(length)) await flush();
          if (staging.items === 0) {
            await staging.ready();
            stagedAt = offset;
          }
          staging.add(data);
          staged.push(j);
          slot++;
          offset += length;
          this.#onProgress?.({ bytes: length, items: 1 });
          continue;
        }
        if (staging && staging.items > 0) await flush();
        // The item's framing: raw bytes (dcpjs), or a torch.save archive around them (torch). A
        // large tensor in shared memory stored as it is gets its checksum on a worker thread,
        // computed while it is written.
        const item = items.item(j);
        const onWorker = this.#format.frameOnWorker?.(item, data, this.#offload);
        // A large dcpjs item elsewhere: written first, its sums computed here while it is.
        const sumsWhileWritten =
          !onWorker && this.#format === NATIVE_ITEM_FORMAT && length >= SMALL_ITEM_BYTES;
        let info: FramedItem["info"] | Promise<FramedItem["info"]>;
        let stored = 0; // the item's bytes as stored (torch's archive is longer than its payload)
        if (sumsWhileWritten) {
          await flush();
          await write(data, length);
          ({ info } = this.#format.frame(item, data));
          stored = length;
        } else {
          const framed = onWorker ?? this.#format.frame(item, data);
          info = framed.info;
          for (const part of framed.parts) {
            stored += part.byteLength;
            if (part.byteLength < SMALL_ITEM_BYTES) {
              batch.push(part);
              batchBytes += part.byteLength;
              if (batchBytes >= WRITE_BATCH_BYTES) await flush();
            } else {
              await flush();
              await write(part, part.byteLength);
            }
          }
        }
        this.#record(results, later, slot++, j, relativePath, offset, stored, info);
        offset += stored;
        this.#onProgress?.({ bytes: length, items: 1 });
      }
      await flush();
      await pending;
      // The fsync (the disk's time) runs while the workers finish the last items' sums (CPU).
      syncing = this.syncFiles ? stream.sync() : undefined;
      syncing?.catch(() => {}); // surfaced where it is awaited
      await Promise.all(later);
      await syncing;
      await stream.close();
    } catch (error) {
      await pending?.catch(() => {});
      await syncing?.catch(() => {});
      await Promise.allSettled(later);
      await stream.abort(error);
      throw error;
    }
  }

  /**
   * Records an item's result in its slot: now where its checksum is known, else once the worker
   * computing it answers (awaited with every item's at the end of the file).
   */
  #record(
    results: WriteResultColumnsBuilder,
    later: Promise<void>[],
    slot: number,
    item: number,
    relativePath: string,
    offset: number,
    length: number,
    info: FramedItem["info"] | Promise<FramedItem["info"]>,
  ): void {
    if (!(info instanceof Promise)) {
      results.set(slot, item, relativePath, offset, length, info);
      return;
    }
    const filled = info.then((recorded) => results.set(slot, item, relativePath, offset, length, recorded));
    filled.catch(() => {}); // surfaced where it is awaited
    later.push(filled);
  }

  /**
   * The staging buffers for a file's small items, where they pay: the dcpjs format, a worker pool
   * that sums batches (`ChecksumOffload.itemSums`), the local file system, and small items weighing at least
   * {@link STAGING_MIN_TASKS} × `workerMinBytes` together (their bytes and
   * {@link ITEM_SUMS_OVERHEAD_BYTES} each) — else
   * undefined. Each buffer holds {@link WRITE_BATCH_BYTES}, or the small tensors' bytes (and
   * 64 KiB for values) where those are fewer.
   */
  #stagingFor(positions: readonly number[], items: PlanItems): SmallItemStaging | undefined {
    if (this.#format !== NATIVE_ITEM_FORMAT || this.#offload.itemSums === undefined) return undefined;
    // A stream may keep a written buffer until it closes (`FileWriteStream.write`), which would
    // forbid reusing a staging buffer; the local file system is done with one once its write resolves.
    if (!(this.fs instanceof LocalFileSystem)) return undefined;
    if (!(this.#workerMinBytes < Number.POSITIVE_INFINITY)) return undefined;
    let bytes = 0;
    let count = 0;
    for (const j of positions) {
      const n = items.bytes(j);
      if (n >= SMALL_ITEM_BYTES) continue;
      bytes += n;
      count++;
    }
    const weight = bytes + count * ITEM_SUMS_OVERHEAD_BYTES;
    if (count < 2 || weight < STAGING_MIN_TASKS * this.#workerMinBytes) return undefined;
    startWorkers();
    return new SmallItemStaging(
      Math.min(WRITE_BATCH_BYTES, bytes + 64 * 1024),
      this.#offload,
      this.#workerMinBytes,
    );
  }

  /**
   * Whether an item's checksum may be computed on a worker thread: a tensor (not a bytes value)
   * of `workerMinBytes` or more, in shared memory, in a format that frames on workers
   * (`ItemFormat.frameOnWorker`).
   */
  #checksumOffThread(isBytes: boolean, data: Uint8Array): boolean {
    return (
      this.#format.frameOnWorker !== undefined &&
      !isBytes &&
      runsOffThread(this.#workerMinBytes, data.byteLength, data)
    );
  }

  /**
   * @inheritDoc
   * Writes `.metadata.{saveTag}.tmp` (fsynced when `syncFiles`), checks that every data file of
   * the save is there with the size it was written with, and renames the tmp over `.metadata` in
   * one atomic step — the commit point, as DCP's `_FileSystemWriter.finish`, with no delete
   * before it, so a reader always finds the old or the new checkpoint. With `overwrite: false` the
   * rename is exclusive. After the commit, the files of the checkpoint it replaced are removed,
   * then every rank's save lease; failures there are process warnings, never the save's error (it
   * has committed). `signal` reaches every step (the read of the replaced `.metadata`, the
   * rename), so an abort ends a stalled one; aborted while the rename was in flight (it may have
   * happened), the save's data files are kept, so a `.metadata` never names missing files.
   * @throws {@link CheckpointError} `CHECKPOINT_EXISTS` when `overwrite` is false and another save
   * committed first (this save's files are removed); `SAVE_FILES_LOST` when a data file of this
   * save is missing or of another size than written (removed under it, e.g. by `dcp gc`): nothing
   * is committed, the checkpoint in place stays as it was; backend errors before the commit.
   */
  async finish(metadata: Metadata, results: WriteResult[][], signal?: AbortSignal): Promise<Metadata> {
    // Each own data file's size: the furthest end of its items (a file's items come together).
    const sizes = writtenFileSizes(results);
    // Columnar (no object per item) when the global plan's metadata is; else a new storage map.
    const committed: Metadata = { ...withWriteResults(metadata, results), storageMeta: this.storageMeta() };
    const tmp = this.fs.concatPath(this.path, metadataTmpFile(this.saveTag));
    const target = this.fs.concatPath(this.path, METADATA_FILE);
    const ownFiles = new Set(sizes.keys());
    const leases = new Set([this.saveTag]);
    for (const file of ownFiles) {
      const tag = saveTagOf(file);
      if (tag) leases.add(tag);
    }
    const removeLeases = async () => {
      for (const tag of leases) await this.#removeQuietly(this.fs.concatPath(this.path, saveLeaseFile(tag)));
    };
    let renaming = false;
    try {
      throwIfAborted(signal);
      const encoded = this.#encodeMetadata(committed);
      await writeWholeFile(this.fs, tmp, [encoded], { sync: this.syncFiles, ...(signal ? { signal } : {}) });
      throwIfAborted(signal);
      const superseded = this.#overwrite ? await this.#committedFiles(target, signal) : new Set<string>();
      await this.#assertFilesWritten(sizes, signal);
      // An incremental save's base must still be there (not being removed by gc) when it commits.
      await this.#base?.lease.confirm(signal);
      throwIfAborted(signal);
      renaming = true;
      try {
        await this.fs.rename(tmp, target, { overwrite: this.#overwrite, ...(signal ? { signal } : {}) });
      } catch (error) {
        if (error instanceof CheckpointError && error.code === "ALREADY_EXISTS") {
          throw new CheckpointError(
            "CHECKPOINT_EXISTS",
            `Checkpoint already exists and overwrite=false: ${this.path} (another save committed first)`,
            { cause: error },
          );
        }
        throw error;
      }
      const stillReferenced = await filesStillReferenced(
        this.fs,
        this.path,
        superseded,
        async (path) =>
          decodeCheckpointMetadata(await readWholeFile(this.fs, path, signal ? { signal } : {})),
        signal,
      ).catch(() => superseded); // unknown: keep them for `dcp gc`
      for (const file of superseded) {
        if (!ownFiles.has(file) && !stillReferenced.has(file))
          await this.#removeQuietly(this.fs.concatPath(this.path, file));
      }
    } catch (error) {
      // Not committed: this save's files are nobody's; leave the directory as it was. Aborted
      // mid-rename, the commit may have happened: the data files stay (an unreferenced one is
      // `dcp gc`'s), so that a .metadata never names missing files.
      await this.#removeQuietly(tmp);
      if (!(renaming && signal?.aborted)) {
        for (const file of ownFiles) await this.#removeQuietly(this.fs.concatPath(this.path, file));
      }
      await removeLeases();
      throw error;
    }
    await removeLeases();
    return committed;
  }

  /**
   * Checks, just before the commit, that every data file of this save is there with the size it
   * was written with: a file removed or replaced under the save (by `dcp gc` with a grace shorter
   * than the save, by hand) would otherwise be committed as a checkpoint nothing can load — and
   * the commit would remove the checkpoint it replaced.
   * @throws {@link CheckpointError} `SAVE_FILES_LOST` naming the first file missing or of another size.
   */
  async #assertFilesWritten(sizes: ReadonlyMap<string, number>, signal?: AbortSignal): Promise<void> {
    const limit = pLimit(COMMIT_CHECKS_IN_FLIGHT);
    const found = await Promise.all(
      [...sizes].map(([file, expected]) =>
        limit(async () => {
          const path = this.fs.concatPath(this.path, file);
          let size: number;
          try {
            const stream = await this.fs.createStream(path, "rb", {
              access: "random",
              ...(signal ? { signal } : {}),
            });
            try {
              size = await stream.size(signal);
            } finally {
              await stream.close();
            }
          } catch (error) {
            if (error instanceof NotFoundError) return { file, expected, size: undefined, error };
            throw error;
          }
          return { file, expected, size, error: undefined };
        }),
      ),
    );
    const lost = found.find((f) => f.size !== f.expected);
    if (lost) {
      throw new CheckpointError(
        "SAVE_FILES_LOST",
        `Expected ${lost.file} of this save in ${this.path} to hold ${lost.expected} bytes before the commit, found ${lost.size === undefined ? "no such file" : `${lost.size} bytes`}: it was removed or replaced while the save ran (dcp gc with a grace shorter than the save?); nothing was committed`,
        lost.error ? { cause: lost.error } : undefined,
      );
    }
  }

  /**
   * @inheritDoc
   * Reads `.metadata` and returns it when it references a file of this save (its save tag).
   */
  async committedMetadata(signal?: AbortSignal): Promise<Metadata | undefined> {
    const file = this.fs.concatPath(this.path, METADATA_FILE);
    const md = decodeCheckpointMetadata(await readWholeFile(this.fs, file, signal ? { signal } : {}));
    const mine = saveTagSuffix(this.saveTag);
    return [...md.storageData.values()].some((i) => i.relativePath.endsWith(mine)) ? md : undefined;
  }

  /** The data files of the checkpoint committed at `target`, or none when there is none (or it is unreadable). */
  async #committedFiles(target: string, signal: AbortSignal | undefined): Promise<Set<string>> {
    try {
      const md = decodeCheckpointMetadata(await readWholeFile(this.fs, target, signal ? { signal } : {}));
      // Its own files only: a referenced file lies in another checkpoint, which stays as it is.
      const own = [...md.storageData.values()].filter((i) => i.baseCheckpoint === undefined);
      return new Set(own.map((i) => i.relativePath));
    } catch (error) {
      throwIfAborted(signal);
      if (!(error instanceof NotFoundError)) {
        emitWarning(`dcpjs: the checkpoint being replaced at ${target} is unreadable; its files stay`, {
          code: "DCPJS_CLEANUP",
          detail: String(error),
        });
      }
      return new Set();
    }
  }

  async #removeQuietly(path: string): Promise<void> {
    try {
      await this.fs.rmFile(path);
    } catch (error) {
      if (!(error instanceof NotFoundError))
        emitWarning(`dcpjs: could not remove ${path}`, {
          code: "DCPJS_CLEANUP",
          detail: String(error),
        });
    }
  }

  /** @inheritDoc */
  storageMeta(): StorageMeta {
    return { checkpointId: this.path, saveId: this.#saveId };
  }
}
