import type { S3Client } from "@aws-sdk/client-s3";
import { FileSystemWriter, type Metadata, type ProgressCallback } from "@dcpjs/core";
import type {
  BaseLease,
  SavePlan,
  SavePlanner,
  StorageMeta,
  StorageSetUp,
  StorageWriter,
  UnchangedItems,
  WriteResult,
} from "@dcpjs/core/extend";
import type { S3ClientConfig } from "./client-config.js";
import { DefaultPrefixStrategy, type S3PrefixStrategy } from "./prefix-strategy.js";
import { S3FileSystem } from "./s3-file-system.js";
import { assertS3CheckpointId, isS3Uri } from "./s3-uri.js";

/** Options of {@link S3StorageWriter}. */
export interface S3StorageWriterOptions {
  /** The checkpoint's URI, `s3://bucket/prefix`. */
  readonly path: string;
  /** A client to use as is. @default one built from `clientConfig` */
  readonly client?: S3Client;
  /** Client and transfer settings. */
  readonly clientConfig?: S3ClientConfig;
  /** Key prefixes of each rank's files. @default {@link DefaultPrefixStrategy} (`__{rank}_`) */
  readonly prefixStrategy?: S3PrefixStrategy;
  /**
   * Files per rank, uploaded concurrently; each holds at most `queueSize × partSize` bytes in
   * memory. @default 1
   */
  readonly threadCount?: number;
  /**
   * Replace an existing checkpoint (the old one stays loadable until the new `.metadata` is
   * copied over it; its objects are deleted after). When false, `.metadata` is committed with a
   * conditional PutObject (`If-None-Match: *`): of concurrent saves exactly one commits, the
   * others fail with `CHECKPOINT_EXISTS` and delete their objects. @default true
   */
  readonly overwrite?: boolean;
  /** Called after each item is handed to the upload. */
  readonly onProgress?: ProgressCallback;
  /**
   * `torch` writes PyTorch DCP's own format (see `FileSystemWriterOptions.format`), which
   * s3torchconnector's `S3StorageReader` reads. @default "dcpjs"
   */
  readonly format?: "dcpjs" | "torch" | (string & {});
}

/**
 * Saves checkpoints to S3, as s3torchconnector's `S3StorageWriter`: DCP's `FileSystemWriter`
 * (composed, not extended) over an {@link S3FileSystem} (streaming multipart uploads, no fsync),
 * with each rank's file prefix chosen by a prefix strategy in the global plan. `.metadata` is
 * committed last by uploading `.metadata.{saveTag}.tmp` and renaming it (copy + delete).
 */
export class S3StorageWriter implements StorageWriter {
  /**
   * Whether a checkpoint id is an `s3://` URI this writer accepts ({@link isS3Uri}, the one check).
   * @param checkpointId - the id.
   */
  static readonly validateCheckpointId: (checkpointId: string) => boolean = isS3Uri;

  /** The backend. */
  readonly fs: S3FileSystem;
  readonly #writer: FileSystemWriter;
  readonly #prefixStrategy: S3PrefixStrategy;

  /**
   * @param options - see {@link S3StorageWriterOptions}.
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` for a path that is not `s3://bucket/…`, an
   * out-of-range client config, or a `threadCount` below 1.
   */
  constructor(options: S3StorageWriterOptions) {
    assertS3CheckpointId(options.path);
    const { client, clientConfig, prefixStrategy, ...rest } = options;
    this.fs = new S3FileSystem({ ...(client ? { client } : {}), ...(clientConfig ? { clientConfig } : {}) });
    this.#writer = new FileSystemWriter({ ...rest, fs: this.fs, syncFiles: false });
    this.#prefixStrategy = prefixStrategy ?? new DefaultPrefixStrategy();
  }

  /** The checkpoint URI this writer saves to. */
  get checkpointPath(): string {
    return this.#writer.checkpointPath;
  }

  /** Files per rank and upload concurrency. */
  get threadCount(): number {
    return this.#writer.threadCount;
  }

  /** This save's tag in its object names: 12 hex digits, new on every `reset`. */
  get saveTag(): string {
    return this.#writer.saveTag;
  }

  /** @inheritDoc Validates `s3://` URIs only. */
  reset(checkpointId?: string): void {
    assertS3CheckpointId(checkpointId);
    this.#writer.reset(checkpointId);
  }

  /** @inheritDoc */
  setUpStorageWriter(setUp: StorageSetUp): void {
    this.#writer.setUpStorageWriter(setUp);
  }

  /** @inheritDoc The overwrite guard (`CHECKPOINT_EXISTS`). */
  prepareLocalPlan(plan: SavePlan): Promise<SavePlan> {
    return this.#writer.prepareLocalPlan(plan);
  }

  /** @inheritDoc Gives plan i the prefix `prefixStrategy.generatePrefix(i, plans.length)`. */
  prepareGlobalPlan(plans: SavePlan[]): SavePlan[] {
    return this.#writer.prepareGlobalPlan(plans).map((plan, i) => ({
      ...plan,
      storageData: { ...plan.storageData, prefix: this.#prefixStrategy.generatePrefix(i, plans.length) },
    }));
  }

  /** @inheritDoc */
  writeData(plan: SavePlan, planner: SavePlanner, signal?: AbortSignal): Promise<WriteResult[]> {
    return this.#writer.writeData(plan, planner, signal);
  }

  /** @inheritDoc */
  finish(metadata: Metadata, results: WriteResult[][], signal?: AbortSignal): Promise<Metadata> {
    return this.#writer.finish(metadata, results, signal);
  }

  /** @inheritDoc */
  storageMeta(): StorageMeta {
    return this.#writer.storageMeta();
  }

  /** @inheritDoc */
  committedMetadata(signal?: AbortSignal): Promise<Metadata | undefined> {
    return this.#writer.committedMetadata(signal);
  }

  /** @inheritDoc */
  useBase(
    baseId: string,
    options?: { readonly unchanged?: UnchangedItems },
    signal?: AbortSignal,
  ): Promise<BaseLease> {
    return this.#writer.useBase(baseId, options, signal);
  }
}
