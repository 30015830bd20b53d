import type { S3Client } from "@aws-sdk/client-s3";
import { FileSystemReader, type ProgressCallback } from "@dcpjs/core";
import type { LoadPlan } from "@dcpjs/core/extend";
import type { S3ClientConfig } from "./client-config.js";
import { S3ReadCache } from "./read-cache.js";
import { type ReaderConstructor, S3ReaderConstructor } from "./readers/reader-constructor.js";
import { S3FileSystem } from "./s3-file-system.js";
import { isS3Uri, parseS3Uri } from "./s3-uri.js";

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
 * over an {@link S3FileSystem} whose local plan is sorted by file offset, and whose item ranges
 * are handed to the reader constructor so the DCP-optimized reader fetches neighbouring items
 * with one ranged GET and a partial load fetches only what it needs.
 */
export class S3StorageReader extends FileSystemReader {
  /** The read cache given by `cacheDir` (its `stats` count this process's hits and fetches), if any. */
  get readCache(): S3ReadCache | undefined {
    return (this.fs as S3FileSystem).readCache;
  }

  /**
   * @param options - see {@link S3StorageReaderOptions}.
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` for a path that is not `s3://bucket/…`,
   * an out-of-range client config or cache bound, or a `cacheDir` that is empty, a file or a path
   * through a file.
   */
  constructor(options: S3StorageReaderOptions) {
    parseS3Uri(options.path);
    const readerConstructor = options.readerConstructor ?? S3ReaderConstructor.dcpOptimized();
    const readCache =
      options.cacheDir !== undefined
        ? new S3ReadCache({
            dir: options.cacheDir,
            ...(options.cacheMaxBytes !== undefined ? { maxBytes: options.cacheMaxBytes } : {}),
          })
        : undefined;
    const fs = new S3FileSystem({
      ...(options.client ? { client: options.client } : {}),
      ...(options.clientConfig ? { clientConfig: options.clientConfig } : {}),
      readerConstructor,
      ...(readCache ? { readCache } : {}),
    });
    super({
      path: options.path,
      fs,
      ...(options.threadCount !== undefined ? { threadCount: options.threadCount } : {}),
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    });
  }

  /**
   * @inheritDoc
   * Sorts the items by their offset in their file (stable; as s3torchconnector). Each file's item
   * ranges reach the reader constructor through the read schedule (`createStream(…, { ranges })`).
   */
  override prepareLocalPlan(plan: LoadPlan): LoadPlan {
    const items = [...plan.items].sort((a, b) => this.storageInfo(a).offset - this.storageInfo(b).offset);
    return super.prepareLocalPlan({ ...plan, items });
  }

  /** @inheritDoc Validates `s3://` URIs only. */
  override reset(checkpointId?: string): void {
    if (checkpointId !== undefined) parseS3Uri(checkpointId);
    super.reset(checkpointId);
  }

  /**
   * Whether a checkpoint id is an `s3://` URI this reader accepts.
   * @param checkpointId - the id.
   */
  static validateCheckpointId(checkpointId: string): boolean {
    return isS3Uri(checkpointId);
  }
}
