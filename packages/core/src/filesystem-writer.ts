import { randomUUID } from "node:crypto";
import { crc32c } from "@node-rs/crc32";
import { DTYPE_BYTES } from "./dtype.js";
import { CheckpointError, throwIfAborted } from "./errors.js";
import type { FileSystemBase, FileWriteStream } from "./filesystem-base.js";
import { LocalFileSystem } from "./local-file-system.js";
import {
  type Metadata,
  metadataIndexKey,
  type SavePlan,
  type StorageMeta,
  type WriteItem,
  type WriteResult,
} from "./metadata.js";
import { encodeMetadata } from "./metadata-codec.js";
import { forEachFile } from "./per-file.js";
import type { SavePlanner } from "./planner.js";
import type { ProgressCallback } from "./progress.js";
import type { StorageSetUp, StorageWriter } from "./storage.js";
import { numel } from "./tensor.js";

/** Name of the committed metadata file in a checkpoint folder. */
export const METADATA_FILE = ".metadata";
/** Name the metadata is written under before the atomic rename to {@link METADATA_FILE}. */
export const METADATA_TMP_FILE = ".metadata.tmp";
/** Items smaller than this are gathered into one write with their neighbours (bytes). */
export const SMALL_ITEM_BYTES = 1024 * 1024;
/** Most bytes of small items gathered into one write. */
export const WRITE_BATCH_BYTES = 8 * 1024 * 1024;
/** Suffix of data files, as DCP's `DEFAULT_SUFFIX`. */
export const DATA_FILE_SUFFIX = ".distcp";

function itemBytes(item: WriteItem): number {
  const td = item.tensorData;
  return td ? numel(td.chunk.sizes) * DTYPE_BYTES[td.properties.dtype] : 0;
}

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
  const bytesItems = items.filter((i) => i.type === "bytes");
  const tensorItems = items.filter((i) => i.type !== "bytes");
  if (bins === 1) return [[...bytesItems, ...tensorItems]];
  const buckets: WriteItem[][] = Array.from({ length: bins }, () => []);
  const sizes = new Array<number>(bins).fill(0);
  bytesItems.forEach((item, i) => {
    buckets[i % bins]!.push(item);
  });
  const sorted = [...tensorItems].sort((a, b) => itemBytes(b) - itemBytes(a));
  for (const item of sorted) {
    let smallest = 0;
    for (let b = 1; b < bins; b++) if (sizes[b]! < sizes[smallest]!) smallest = b;
    buckets[smallest]!.push(item);
    sizes[smallest]! += itemBytes(item);
  }
  return buckets;
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
   * Replace an existing checkpoint at `path`; when false, the save fails on every rank with
   * "Checkpoint already exists" before writing anything. @default true
   */
  readonly overwrite?: boolean;
  /** Called after each item is written, with its bytes. */
  readonly onProgress?: ProgressCallback;
}

/**
 * Writes a checkpoint through a {@link FileSystemBase}, as DCP's `FileSystemWriter`: files
 * `{prefix}{n}.distcp` (prefix `__{rank}_`), bytes items first then tensors as raw little-endian
 * bytes, each item's offset, length and CRC-32C recorded, and `.metadata` committed last by
 * writing `.metadata.tmp` and renaming it.
 *
 * Memory: items of {@link SMALL_ITEM_BYTES} or more are written straight from tensor memory;
 * smaller ones are copied into one batch of at most {@link WRITE_BATCH_BYTES} per file being
 * written; non-tensor values are encoded into new buffers.
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
  #saveId: string = randomUUID();
  #rank = 0;

  /**
   * @param options - see {@link FileSystemWriterOptions}.
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` when `threadCount` is not an integer ≥ 1.
   */
  constructor(options: FileSystemWriterOptions) {
    this.fs = options.fs ?? new LocalFileSystem();
    this.path = this.fs.initPath(options.path);
    this.threadCount = options.threadCount ?? 1;
    if (!Number.isSafeInteger(this.threadCount) || this.threadCount < 1) {
      throw new CheckpointError(
        "INVALID_ARGUMENT",
        `Expected threadCount to be an integer >= 1, got ${options.threadCount}`,
      );
    }
    this.syncFiles = options.syncFiles ?? true;
    this.#singleFilePerRank = options.singleFilePerRank ?? true;
    this.#overwrite = options.overwrite ?? true;
    this.#onProgress = options.onProgress;
  }

  /** The checkpoint path this writer saves to. */
  get checkpointPath(): string {
    return this.path;
  }

  /** @inheritDoc */
  reset(checkpointId?: string): void {
    if (checkpointId !== undefined) this.path = this.fs.initPath(checkpointId);
    this.#saveId = randomUUID();
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
    return plans.map((plan, i) => ({ ...plan, storageData: { prefix: `__${i}_` } }));
  }

  /**
   * @inheritDoc
   * @throws {@link CheckpointError} from the backend (`IO_ERROR`, …) or `ABORTED`; a file whose
   * write fails is aborted (removed), and the checkpoint is never committed.
   */
  async writeData(plan: SavePlan, planner: SavePlanner, signal?: AbortSignal): Promise<WriteResult[]> {
    throwIfAborted(signal);
    const prefix = plan.storageData?.prefix ?? `__${this.#rank}_`;
    const buckets = this.#singleFilePerRank
      ? splitBySizeAndType(this.threadCount, plan.items)
      : plan.items.map((i) => [i]);
    const perFile = await forEachFile(buckets, this.threadCount, signal, (items, n, linked) =>
      this.#writeFile(`${prefix}${n}${DATA_FILE_SUFFIX}`, items, planner, linked),
    );
    return perFile.flat();
  }

  /**
   * Writes one file: large items straight from tensor memory (the CRC-32C computed while the
   * write is in flight), small ones gathered into one buffer of up to {@link WRITE_BATCH_BYTES}
   * so that a state dict of many small tensors costs few writes, not one per item.
   */
  async #writeFile(
    relativePath: string,
    items: readonly WriteItem[],
    planner: SavePlanner,
    signal: AbortSignal,
  ): Promise<WriteResult[]> {
    throwIfAborted(signal);
    const stream: FileWriteStream = await this.fs.createStream(
      this.fs.concatPath(this.path, relativePath),
      "wb",
      { signal },
    );
    const results: WriteResult[] = [];
    let batch: Uint8Array[] = [];
    let batchBytes = 0;
    // One write may be in flight while the next batch is gathered and checksummed.
    let pending: Promise<void> | undefined;
    const flush = async () => {
      if (batchBytes === 0) return;
      const data = batch.length === 1 ? batch[0]! : Buffer.concat(batch, batchBytes);
      batch = [];
      batchBytes = 0;
      await pending;
      pending = stream.write(data);
      pending.catch(() => {}); // surfaced where it is awaited
    };
    try {
      let offset = stream.tell();
      for (const item of items) {
        throwIfAborted(signal);
        const data = planner.resolveData(item);
        let crc: number;
        if (data.byteLength < SMALL_ITEM_BYTES) {
          crc = crc32c(data);
          batch.push(data);
          batchBytes += data.byteLength;
          if (batchBytes >= WRITE_BATCH_BYTES) await flush();
        } else {
          await flush();
          await pending;
          pending = stream.write(data);
          pending.catch(() => {}); // surfaced where it is awaited
          crc = crc32c(data);
        }
        results.push({
          index: item.index,
          sizeInBytes: data.byteLength,
          storageData: { relativePath, offset, length: data.byteLength, crc32c: crc },
        });
        offset += data.byteLength;
        this.#onProgress?.({ bytes: data.byteLength, items: 1 });
      }
      await flush();
      await pending;
      if (this.syncFiles) await stream.sync();
      await stream.close();
    } catch (error) {
      await pending?.catch(() => {});
      await stream.abort(error);
      throw error;
    }
    return results;
  }

  /**
   * @inheritDoc
   * Writes `.metadata.tmp` (fsynced when `syncFiles`), removes an existing `.metadata`, then
   * renames — the commit point, as DCP's `_FileSystemWriter.finish`.
   */
  async finish(metadata: Metadata, results: WriteResult[][], signal?: AbortSignal): Promise<void> {
    throwIfAborted(signal);
    for (const r of results.flat()) metadata.storageData.set(metadataIndexKey(r.index), r.storageData);
    metadata.storageMeta = this.storageMeta();
    const tmp = this.fs.concatPath(this.path, METADATA_TMP_FILE);
    const target = this.fs.concatPath(this.path, METADATA_FILE);
    const stream = await this.fs.createStream(tmp, "wb", signal ? { signal } : {});
    try {
      await stream.write(encodeMetadata(metadata));
      if (this.syncFiles) await stream.sync();
      await stream.close();
    } catch (error) {
      await stream.abort(error);
      throw error;
    }
    throwIfAborted(signal);
    if (await this.fs.exists(target)) await this.fs.rmFile(target);
    await this.fs.rename(tmp, target);
  }

  /** @inheritDoc */
  storageMeta(): StorageMeta {
    return { checkpointId: this.path, saveId: this.#saveId };
  }
}
