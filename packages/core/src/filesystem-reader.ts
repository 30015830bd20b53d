import { randomUUID } from "node:crypto";
import { crc32c } from "@node-rs/crc32";
import pLimit, { type LimitFunction } from "p-limit";
import { contiguousRun } from "./contiguous-box.js";
import { DTYPE_BYTES } from "./dtype.js";
import {
  CheckpointError,
  ChecksumMismatchError,
  MetadataError,
  NotFoundError,
  throwIfAborted,
} from "./errors.js";
import type { FileReadStream, FileSystemBase } from "./filesystem-base.js";
import { METADATA_FILE } from "./filesystem-writer.js";
import { LocalFileSystem } from "./local-file-system.js";
import {
  type LoadPlan,
  type Metadata,
  metadataIndexKey,
  type ReadItem,
  type StorageInfo,
  type TensorStorageMetadata,
} from "./metadata.js";
import { decodeMetadata } from "./metadata-codec.js";
import type { LoadPlanner } from "./planner.js";
import type { ProgressCallback } from "./progress.js";
import type { StorageReader, StorageSetUp } from "./storage.js";
import { copyBox, type Tensor, tensorBytes } from "./tensor.js";

/** Saved chunks a reader has in flight per file (read ahead while earlier ones are verified). */
export const READ_AHEAD_CHUNKS = 4;
/** Largest single positional read; bigger chunks are read in pieces of this size, in parallel. */
export const READ_PIECE_BYTES = 8 * 1024 * 1024;
/** Positional reads in flight per file (libuv's thread pool has 4 threads by default). */
export const READ_PIECES_IN_FLIGHT = 4;

/** A saved chunk's bytes and, when read in place, the tensor they landed in. */
interface FetchedChunk {
  readonly bytes: Uint8Array;
  readonly dest: Tensor | undefined;
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
}

/**
 * Reads a checkpoint through a {@link FileSystemBase}, as DCP's `FileSystemReader`: items grouped
 * by data file and read in offset order, each item's length and CRC-32C verified before use, and
 * each read item's n-d box copied straight into the destination tensor.
 *
 * Memory: chunks read straight into their destination need none; others are staged, at most
 * {@link READ_AHEAD_CHUNKS} per file being read (`threadCount` files at once), each the size of
 * its saved chunk.
 */
export class FileSystemReader implements StorageReader {
  /** The backend. */
  readonly fs: FileSystemBase;
  /** The normalised checkpoint path. */
  protected path: string;
  /** Where each item is, from the metadata. */
  protected storageData: Map<string, StorageInfo> = new Map();
  /** The checkpoint's metadata. */
  protected metadata: Metadata | undefined;
  readonly #threadCount: number;
  readonly #onProgress: ProgressCallback | undefined;
  #loadId: string = randomUUID();

  /**
   * @param options - see {@link FileSystemReaderOptions}.
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` when `threadCount` is not an integer ≥ 1.
   */
  constructor(options: FileSystemReaderOptions) {
    this.fs = options.fs ?? new LocalFileSystem();
    this.path = this.fs.initPath(options.path);
    this.#threadCount = options.threadCount ?? 4;
    if (!Number.isSafeInteger(this.#threadCount) || this.#threadCount < 1) {
      throw new CheckpointError(
        "INVALID_ARGUMENT",
        `Expected threadCount to be an integer >= 1, got ${options.threadCount}`,
      );
    }
    this.#onProgress = options.onProgress;
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
   * @throws {@link CheckpointError} `INCOMPLETE_CHECKPOINT` when there is no `.metadata` (the
   * save never committed); {@link MetadataError} when it is malformed.
   */
  async readMetadata(signal?: AbortSignal): Promise<Metadata> {
    throwIfAborted(signal);
    const file = this.fs.concatPath(this.path, METADATA_FILE);
    let bytes: Uint8Array;
    try {
      const stream = await this.fs.createStream(file, "rb", signal ? { signal } : {});
      try {
        bytes = await stream.read(0, await stream.size(signal), signal);
      } finally {
        await stream.close();
      }
    } catch (error) {
      if (error instanceof NotFoundError) {
        throw new CheckpointError(
          "INCOMPLETE_CHECKPOINT",
          `Expected a committed checkpoint at ${this.path} (a ${METADATA_FILE} file), found none: the save did not complete, or the path is wrong`,
          { cause: error },
        );
      }
      throw error;
    }
    const md = decodeMetadata(bytes);
    md.storageMeta = { ...md.storageMeta, loadId: this.#loadId };
    return md;
  }

  /** @inheritDoc */
  setUpStorageReader(metadata: Metadata, _setUp: StorageSetUp): void {
    this.metadata = metadata;
    this.storageData = metadata.storageData;
  }

  /** @inheritDoc */
  prepareLocalPlan(plan: LoadPlan): LoadPlan {
    return plan;
  }

  /** @inheritDoc */
  prepareGlobalPlan(plans: LoadPlan[]): LoadPlan[] {
    return plans;
  }

  /** Where the bytes of a read item's saved chunk are. */
  protected storageInfo(item: ReadItem): StorageInfo {
    const info = this.storageData.get(metadataIndexKey(item.storageIndex));
    if (!info) {
      throw new MetadataError(
        `Malformed .metadata: no storage entry for "${item.storageIndex.fqn}" at [${item.storageIndex.offset?.join(", ") ?? ""}]`,
      );
    }
    return info;
  }

  /**
   * @inheritDoc
   * @throws {@link ChecksumMismatchError} naming the fqn when an item's CRC-32C differs;
   * {@link CheckpointError} `TRUNCATED` when a data file is shorter than recorded; `NOT_FOUND`
   * when a data file is missing.
   */
  async readData(plan: LoadPlan, planner: LoadPlanner, signal?: AbortSignal): Promise<void> {
    throwIfAborted(signal);
    const byFile = new Map<string, ReadItem[]>();
    for (const item of plan.items) {
      const { relativePath } = this.storageInfo(item);
      const list = byFile.get(relativePath);
      if (list) list.push(item);
      else byFile.set(relativePath, [item]);
    }
    const limit = pLimit(this.#threadCount);
    const controller = new AbortController();
    const linked = signal ? AbortSignal.any([signal, controller.signal]) : controller.signal;
    const settled = await Promise.allSettled(
      [...byFile].map(([relativePath, items]) =>
        limit(async () => {
          try {
            await this.#readFile(relativePath, items, planner, linked);
          } catch (error) {
            controller.abort(error);
            throw error;
          }
        }),
      ),
    );
    const failed = settled.find((s) => s.status === "rejected");
    if (failed) throw failed.reason;
  }

  /**
   * Reads one file's items in offset order as a bounded pipeline: up to
   * {@link READ_AHEAD_CHUNKS} saved chunks are read ahead (in {@link READ_PIECE_BYTES} pieces,
   * {@link READ_PIECES_IN_FLIGHT} at once) while earlier ones are verified and delivered.
   * A chunk that one read item copies whole into a contiguous part of its destination is read
   * straight into the destination tensor; others go through a staging buffer and the n-d box copy.
   */
  async #readFile(
    relativePath: string,
    items: ReadItem[],
    planner: LoadPlanner,
    signal: AbortSignal,
  ): Promise<void> {
    throwIfAborted(signal);
    const ordered = [...items].sort((a, b) => this.storageInfo(a).offset - this.storageInfo(b).offset);
    const groups: ReadItem[][] = [];
    for (const item of ordered) {
      const last = groups.at(-1);
      if (last && metadataIndexKey(last[0]!.storageIndex) === metadataIndexKey(item.storageIndex))
        last.push(item);
      else groups.push([item]);
    }
    const stream = await this.fs.createStream(this.fs.concatPath(this.path, relativePath), "rb", { signal });
    const pieces = pLimit(READ_PIECES_IN_FLIGHT);
    const fetch = (group: ReadItem[]): Promise<FetchedChunk> =>
      this.#fetchChunk(stream, group, planner, pieces, signal);
    const inFlight: Promise<FetchedChunk>[] = [];
    try {
      let next = 0;
      while (next < groups.length && inFlight.length < READ_AHEAD_CHUNKS)
        inFlight.push(fetch(groups[next++]!));
      for (const group of groups) {
        const fetched = await inFlight.shift()!;
        if (next < groups.length) inFlight.push(fetch(groups[next++]!));
        throwIfAborted(signal);
        const info = this.storageInfo(group[0]!);
        const actual = crc32c(fetched.bytes);
        if (actual !== info.crc32c) {
          throw new ChecksumMismatchError(
            group[0]!.storageIndex.fqn,
            info.crc32c,
            actual,
            `${relativePath} @ ${info.offset}+${info.length}`,
          );
        }
        this.#deliver(group, fetched, planner);
        this.#onProgress?.({ bytes: info.length, items: 1 });
      }
    } finally {
      await Promise.allSettled(inFlight);
      await stream.close();
    }
  }

  /** Reads one saved chunk: into its destination when {@link FileSystemReader.#directTarget} allows, else into a new buffer. */
  async #fetchChunk(
    stream: FileReadStream,
    group: ReadItem[],
    planner: LoadPlanner,
    pieces: LimitFunction,
    signal: AbortSignal,
  ): Promise<FetchedChunk> {
    const info = this.storageInfo(group[0]!);
    const direct = this.#directTarget(group, planner);
    const bytes = direct?.bytes ?? new Uint8Array(info.length);
    if (!stream.readInto) {
      bytes.set(await stream.read(info.offset, info.length, signal));
    } else {
      const reads: Promise<void>[] = [];
      for (let at = 0; at < info.length; at += READ_PIECE_BYTES) {
        const piece = bytes.subarray(at, Math.min(at + READ_PIECE_BYTES, info.length));
        reads.push(pieces(() => stream.readInto!(info.offset + at, piece, signal)));
      }
      await Promise.all(reads);
    }
    return { bytes, dest: direct?.dest };
  }

  /** The destination bytes when a chunk is read by one item, whole, into a contiguous run of its destination. */
  #directTarget(group: ReadItem[], planner: LoadPlanner): { bytes: Uint8Array; dest: Tensor } | undefined {
    const item = group[0]!;
    if (group.length !== 1 || item.type !== "tensor") return undefined;
    const saved = this.#savedChunk(item);
    if (item.lengths.some((l, d) => l !== saved.sizes[d] || item.storageOffsets[d] !== 0)) return undefined;
    const dest = planner.resolveTensor(item);
    const run = contiguousRun(dest.shape, item.destOffsets, item.lengths);
    if (!run) return undefined;
    const elementBytes = DTYPE_BYTES[dest.dtype];
    return {
      bytes: tensorBytes(dest).subarray(run.start * elementBytes, (run.start + run.count) * elementBytes),
      dest,
    };
  }

  /** Hands a verified chunk to the planner: values decoded, tensor boxes copied (unless read in place). */
  #deliver(group: ReadItem[], fetched: FetchedChunk, planner: LoadPlanner): void {
    for (const item of group) {
      if (item.type === "bytes") {
        planner.loadBytes(item, fetched.bytes);
        continue;
      }
      if (fetched.dest) {
        planner.commitTensor(item, fetched.dest);
        continue;
      }
      const saved = this.#savedChunk(item);
      const dest = planner.resolveTensor(item);
      copyBox(
        fetched.bytes,
        saved.sizes,
        item.storageOffsets,
        tensorBytes(dest),
        dest.shape,
        item.destOffsets,
        item.lengths,
        DTYPE_BYTES[dest.dtype],
      );
      planner.commitTensor(item, dest);
    }
  }

  #savedChunk(item: ReadItem): TensorStorageMetadata["chunks"][number] {
    const entry = this.metadata?.stateDictMetadata.get(item.storageIndex.fqn);
    const key = item.storageIndex.offset?.join(",");
    const hinted = entry?.type === "tensor" ? entry.chunks[item.storageIndex.index ?? -1] : undefined;
    const chunk =
      hinted && hinted.offsets.join(",") === key
        ? hinted
        : entry?.type === "tensor"
          ? entry.chunks.find((c) => c.offsets.join(",") === key)
          : undefined;
    if (!chunk || chunk.offsets.join(",") !== key) {
      throw new MetadataError(
        `Malformed .metadata: no chunk of "${item.storageIndex.fqn}" at [${key ?? ""}]`,
      );
    }
    return chunk;
  }
}
