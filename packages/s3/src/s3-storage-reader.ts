import type { S3Client } from "@aws-sdk/client-s3";
import { FileSystemReader, type Metadata, type ProgressCallback } from "@dcpjs/core";
import {
  type LoadPlan,
  type LoadPlanner,
  metadataIndexKey,
  type StorageInfo,
  type StorageReader,
  type StorageSetUp,
} from "@dcpjs/core/extend";
import type { S3ClientConfig } from "./client-config.js";
import { S3ReadCache } from "./read-cache.js";
import { type ReaderConstructor, S3ReaderConstructor } from "./readers/reader-constructor.js";
import { S3FileSystem } from "./s3-file-system.js";
import { assertS3CheckpointId, isS3Uri } from "./s3-uri.js";

/** Options of {@link S3StorageReader}. */
export interface S3StorageReaderOptions {
  /** The checkpoint's URI, `s3://bucket/prefix`. */
  readonly path: string;
  /** A client to use as is. @default one built from `clientConfig` */
  readonly client?: S3Client;
  /** Client settings. */
  readonly clientConfig?: S3ClientConfig;
  /** How data files are read. @default {@link S3ReaderConstructor.dcpOptimized} */
  readonly readerConstructor?: ReaderConstructor;
  /** Data files read concurrently by each rank. @default 4 */
  readonly threadCount?: number;
  /** Called after each item is read and verified. */
  readonly onProgress?: ProgressCallback;
  /**
   * A folder for a machine-local read cache ({@link S3ReadCache}): ranks on one machine that load
   * the same checkpoint fetch each byte from S3 once, and a later load is served from disk. With
   * it, `readerConstructor` is not used.
   * @default no cache
   * @example `{ path: "s3://bucket/run/step-100", cacheDir: "/var/cache/dcpjs" }`
   */
  readonly cacheDir?: string;
  /** The cache's bound in bytes (least recently used blocks are evicted). @default 10 GiB */
  readonly cacheMaxBytes?: number;
}

/**
 * Loads checkpoints from S3, as s3torchconnector's `S3StorageReader`: DCP's `FileSystemReader`
 * over an {@link S3FileSystem} (composed, not extended) whose local plan is sorted by file offset.
 * The reader constructor's coalescing rule is applied by the read schedule, whose runs reach the
 * reader it makes, so the DCP-optimized reader fetches neighbouring items with one ranged GET and
 * a partial load fetches only what it needs.
 */
export class S3StorageReader implements StorageReader {
  /**
   * Whether a checkpoint id is an `s3://` URI this reader accepts ({@link isS3Uri}, the one check).
   * @param checkpointId - the id.
   */
  static readonly validateCheckpointId: (checkpointId: string) => boolean = isS3Uri;

  /** The backend. */
  readonly fs: S3FileSystem;
  readonly #reader: FileSystemReader;
  /** Where each item is, from the metadata of the current load (for the offset order of the local plan). */
  #storageData: ReadonlyMap<string, StorageInfo> = new Map();

  /**
   * @param options - see {@link S3StorageReaderOptions}.
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` for a path that is not `s3://bucket/…`,
   * an out-of-range client config or cache bound, or a `cacheDir` that is empty, a file or a path
   * through a file.
   */
  constructor(options: S3StorageReaderOptions) {
    assertS3CheckpointId(options.path);
    const readerConstructor = options.readerConstructor ?? S3ReaderConstructor.dcpOptimized();
    const readCache =
      options.cacheDir !== undefined
        ? new S3ReadCache({
            dir: options.cacheDir,
            ...(options.cacheMaxBytes !== undefined ? { maxBytes: options.cacheMaxBytes } : {}),
          })
        : undefined;
    this.fs = new S3FileSystem({
      ...(options.client ? { client: options.client } : {}),
      ...(options.clientConfig ? { clientConfig: options.clientConfig } : {}),
      readerConstructor,
      ...(readCache ? { readCache } : {}),
    });
    this.#reader = new FileSystemReader({
      path: options.path,
      fs: this.fs,
      ...(options.threadCount !== undefined ? { threadCount: options.threadCount } : {}),
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    });
  }

  /** The read cache given by `cacheDir` (its `stats` count this process's hits and fetches), if any. */
  get readCache(): S3ReadCache | undefined {
    return this.fs.readCache;
  }

  /** The checkpoint URI this reader loads from. */
  get checkpointPath(): string {
    return this.#reader.checkpointPath;
  }

  /** @inheritDoc Validates `s3://` URIs only. */
  reset(checkpointId?: string): void {
    assertS3CheckpointId(checkpointId);
    this.#reader.reset(checkpointId);
  }

  /** @inheritDoc */
  readMetadata(signal?: AbortSignal): Promise<Metadata> {
    return this.#reader.readMetadata(signal);
  }

  /** @inheritDoc */
  setUpStorageReader(metadata: Metadata, setUp: StorageSetUp): void {
    this.#storageData = metadata.storageData;
    this.#reader.setUpStorageReader(metadata, setUp);
  }

  /**
   * @inheritDoc
   * Sorts the items by their offset in their file (stable; as s3torchconnector). Each file's runs
   * reach the reader constructor through the read schedule (`createStream(…, { runs })`).
   */
  prepareLocalPlan(plan: LoadPlan): LoadPlan {
    const offset = (item: LoadPlan["items"][number]) =>
      this.#storageData.get(metadataIndexKey(item.storageIndex))?.offset ?? Number.POSITIVE_INFINITY;
    const items = [...plan.items].sort((a, b) => offset(a) - offset(b) || 0);
    return this.#reader.prepareLocalPlan({ ...plan, items });
  }

  /** @inheritDoc */
  prepareGlobalPlan(plans: LoadPlan[]): LoadPlan[] {
    return this.#reader.prepareGlobalPlan(plans);
  }

  /** @inheritDoc */
  readData(plan: LoadPlan, planner: LoadPlanner, signal?: AbortSignal): Promise<void> {
    return this.#reader.readData(plan, planner, signal);
  }
}
