import { createHash } from "node:crypto";
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { CheckpointError } from "@dcpjs/core";
import {
  type CreateStreamOptions,
  type FileEntry,
  type FileReadStream,
  type FileSystemBase,
  type FileWriteStream,
  type ReadCapabilities,
  type RenameOptions,
  type StreamMode,
  throwIfAborted,
} from "@dcpjs/core/extend";
import {
  configuredMaxAttempts,
  createS3Client,
  maxAttemptsOf,
  resolveTransferSettings,
  type S3ClientConfig,
  type S3TransferSettings,
} from "./client-config.js";
import type { S3ReadCache } from "./read-cache.js";
import { CachedS3Reader } from "./readers/cached-reader.js";
import { RangeBasedS3Reader } from "./readers/range-based-reader.js";
import { type ReaderConstructor, S3ReaderConstructor } from "./readers/reader-constructor.js";
import { isNotFound, s3ErrorInfo, toCheckpointError } from "./s3-errors.js";
import { retryS3 } from "./s3-retry.js";
import { escapePath, isS3Uri, joinS3Path, parseS3Uri } from "./s3-uri.js";
import { S3WriteStream } from "./s3-write-stream.js";

/** Attempts of the DeleteObject that completes a rename, as s3torchconnector (tenacity, 3 attempts). */
export const RENAME_DELETE_ATTEMPTS = 3;
/** The first pause before the rename's DeleteObject is tried again (ms); it doubles, up to 5 s, with jitter. */
const RENAME_DELETE_MIN_DELAY_MS = 500;

/** Options of {@link S3FileSystem}. */
export interface S3FileSystemOptions {
  /** A client to use as is; `clientConfig`'s client settings are then ignored. @default one built from `clientConfig` */
  readonly client?: S3Client;
  /** Client and transfer settings (part size and queue size apply with `client` too). */
  readonly clientConfig?: S3ClientConfig;
  /** How objects opened in `rb` mode are read. @default {@link S3ReaderConstructor.sequential} */
  readonly readerConstructor?: ReaderConstructor;
  /**
   * A machine-local cache that every `rb` stream reads through (then `readerConstructor` is not
   * used): each byte is fetched from S3 once per machine while it stays cached.
   * @default none
   */
  readonly readCache?: S3ReadCache;
}

/**
 * {@link FileSystemBase} over S3 and S3-compatible stores, as s3torchconnector's `S3FileSystem`.
 * Paths are `s3://bucket/key` URIs.
 */
export class S3FileSystem implements FileSystemBase {
  /** The client every request goes through. */
  readonly client: S3Client;
  /** Part size and queue size of uploads. */
  readonly transfer: S3TransferSettings;
  /** The reader constructor for `rb` streams. */
  readonly readerConstructor: ReaderConstructor;
  /** The read cache `rb` streams go through, if any. */
  readonly readCache: S3ReadCache | undefined;
  readonly #rereadsOnMismatch: number;

  /**
   * @param options - see {@link S3FileSystemOptions}.
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` when the config is out of range (part size
   * outside 5 MiB–5 GiB, max attempts outside 1–64).
   */
  constructor(options: S3FileSystemOptions = {}) {
    this.transfer = resolveTransferSettings(options.clientConfig);
    this.client = options.client ?? createS3Client(options.clientConfig);
    this.readerConstructor = options.readerConstructor ?? S3ReaderConstructor.sequential();
    this.readCache = options.readCache;
    this.#rereadsOnMismatch = configuredMaxAttempts(options.clientConfig) - 1;
  }

  /**
   * @inheritDoc
   * `wb`: an {@link S3WriteStream} (streaming multipart upload). `rb`: a {@link CachedS3Reader}
   * with a read cache, else the configured reader (requests are lazy: a missing key fails on the first read or size).
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` for another mode, with s3torchconnector's
   * message, or a path that is not an `s3://` URI.
   */
  async createStream(path: string, mode: "wb", options?: CreateStreamOptions): Promise<FileWriteStream>;
  async createStream(path: string, mode: "rb", options?: CreateStreamOptions): Promise<FileReadStream>;
  async createStream(
    path: string,
    mode: StreamMode,
    options?: CreateStreamOptions,
  ): Promise<FileWriteStream | FileReadStream> {
    throwIfAborted(options?.signal);
    const { bucket, key } = parseS3Uri(path);
    if (mode === "wb")
      return new S3WriteStream(this.client, bucket, key, path, this.transfer, options?.signal);
    if (mode === "rb") {
      const ref = { client: this.client, bucket, key, uri: path };
      if (this.readCache) return new CachedS3Reader(ref, this.readCache, options?.refetch);
      // Small ranges at random positions: plain ranged GETs, no read-ahead, no runs needed up front.
      return options?.access === "random"
        ? new RangeBasedS3Reader(ref, 0)
        : this.readerConstructor.create(ref, options?.runs);
    }
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Invalid mode=${JSON.stringify(mode)} mode argument: create_stream only supports rb (read mode) & wb (write mode)`,
    );
  }

  /**
   * @inheritDoc
   * The reader constructor's (the DCP-optimized one states s3torchconnector's coalescing rule and
   * 8 MiB pieces), or with a read cache, pieces of one cache block; `rereadsOnMismatch` is
   * `maxAttempts − 1` (9 by default): a response whose bytes fail their checksum (damaged in
   * transit) is requested again, as a transport failure would be.
   */
  get readCapabilities(): Partial<ReadCapabilities> {
    const rereadsOnMismatch = this.#rereadsOnMismatch;
    if (this.readCache) return { pieceBytes: this.readCache.blockBytes, rereadsOnMismatch };
    return { ...this.readerConstructor.capabilities, rereadsOnMismatch };
  }

  /** @inheritDoc Joins with one `/`, as `os.path.join`. */
  concatPath(path: string, suffix: string): string {
    return joinS3Path(path, suffix);
  }

  /** @inheritDoc The URI as given. */
  initPath(path: string): string {
    return path;
  }

  /**
   * @inheritDoc
   * CopyObject with the source key URL-encoded per segment (an atomic replace of the target);
   * exclusive (`overwrite: false`) as a GetObject of the source (checked against its length and
   * MD5 ETag) and a PutObject with `Content-MD5` and `If-None-Match: *`, which S3 refuses with
   * 412 when the key exists (meant for small files such as `.metadata`: the body passes through
   * memory; when a retried PUT is refused, the key holding exactly these bytes is this rename's own
   * PUT whose first answer was lost, and the rename succeeds). Then DeleteObject of the
   * source, retried {@link RENAME_DELETE_ATTEMPTS} times with random exponential backoff (at most
   * 5 s). The copy is the commit: a delete that still fails is a process warning (code
   * `DCPJS_CLEANUP`), not an error, and leaves the source behind. `signal` reaches every request:
   * an abort settles the rename at once with `ABORTED` (whether an in-flight copy or PUT took
   * effect is then unknown; after the copy, an aborted delete is the warning above).
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` when the buckets differ; `ALREADY_EXISTS`
   * for an exclusive rename onto an existing key; {@link NotFoundError} when the source does not
   * exist; other mapped S3 errors.
   */
  async rename(path: string, newPath: string, options?: RenameOptions): Promise<void> {
    const src = parseS3Uri(path);
    const dst = parseS3Uri(newPath);
    if (src.bucket !== dst.bucket) {
      throw new CheckpointError(
        "INVALID_ARGUMENT",
        `Source and destination buckets cannot be different (rename does not support cross-buckets operations): ${src.bucket} → ${dst.bucket}`,
      );
    }
    const signal = options?.signal;
    throwIfAborted(signal);
    const send = signal ? { abortSignal: signal } : {};
    let body: Uint8Array | undefined;
    try {
      if (options?.overwrite === false) {
        body = await this.#getVerified(src.bucket, src.key, path, signal);
        await this.client.send(
          new PutObjectCommand({
            Bucket: dst.bucket,
            Key: dst.key,
            Body: body,
            IfNoneMatch: "*",
            ContentMD5: createHash("md5").update(body).digest("base64"),
          }),
          send,
        );
      } else {
        await this.client.send(
          new CopyObjectCommand({
            Bucket: dst.bucket,
            Key: dst.key,
            CopySource: `${src.bucket}/${escapePath(src.key)}`,
          }),
          send,
        );
      }
    } catch (error) {
      const { name, status } = s3ErrorInfo(error);
      if (status === 412 || name === "PreconditionFailed") {
        // A retried PUT whose first answer was lost finds its own object: the same bytes are ours.
        if (body === undefined || !(await this.#holds(dst.bucket, dst.key, newPath, body, signal))) {
          throw new CheckpointError("ALREADY_EXISTS", `Expected no object at ${newPath}, found one`, {
            cause: error,
          });
        }
      } else {
        throw toCheckpointError(error, "copy", path, signal);
      }
    }
    try {
      await retryS3(
        () => this.client.send(new DeleteObjectCommand({ Bucket: src.bucket, Key: src.key }), send),
        {
          attempts: RENAME_DELETE_ATTEMPTS,
          minDelayMs: RENAME_DELETE_MIN_DELAY_MS,
          shouldRetry: () => true,
          ...(signal ? { signal } : {}),
        },
      );
    } catch (error) {
      process.emitWarning(`dcpjs: renamed ${path} to ${newPath}, but could not delete the source`, {
        code: "DCPJS_CLEANUP",
        detail: String(toCheckpointError(error, "delete", path, signal).message),
      });
    }
  }

  /** Whether the object at `key` holds exactly `bytes` (false when it is gone or differs). */
  async #holds(
    bucket: string,
    key: string,
    uri: string,
    bytes: Uint8Array,
    signal: AbortSignal | undefined,
  ): Promise<boolean> {
    try {
      return Buffer.from(await this.#getVerified(bucket, key, uri, signal)).equals(bytes);
    } catch (error) {
      if (isNotFound(error)) return false;
      throw toCheckpointError(error, "read", uri, signal);
    }
  }

  /**
   * GETs a small object whole, checked against its length and — when its ETag is a plain MD5, as
   * for single-part uploads without KMS — against its MD5; a response that fails a check is
   * requested again under the one retry policy ({@link retryS3}), within the client's
   * `maxAttempts` ({@link maxAttemptsOf}).
   */
  async #getVerified(
    bucket: string,
    key: string,
    uri: string,
    signal: AbortSignal | undefined,
  ): Promise<Uint8Array> {
    return retryS3(
      async () => {
        const got = await this.client.send(
          new GetObjectCommand({ Bucket: bucket, Key: key }),
          signal ? { abortSignal: signal } : {},
        );
        const body = await got.Body!.transformToByteArray();
        const etag = got.ETag?.replaceAll('"', "");
        const md5 = /^[0-9a-f]{32}$/i.test(etag ?? "") ? createHash("md5").update(body).digest("hex") : etag;
        if (body.byteLength === got.ContentLength && md5 === etag) return body;
        throw new CheckpointError(
          "TRUNCATED",
          `Expected ${got.ContentLength} bytes of ${uri} with MD5 ${etag}, got ${body.byteLength} with ${md5}`,
        );
      },
      {
        attempts: await maxAttemptsOf(this.client),
        // Only a response that fails its checks is asked for again; the SDK retried the request itself.
        shouldRetry: (error) => error instanceof CheckpointError && error.code === "TRUNCATED",
        ...(signal ? { signal } : {}),
      },
    );
  }

  /**
   * @inheritDoc
   * ListObjectsV2 under `{key}/` with the delimiter `/` (every page): the objects directly there,
   * with size and LastModified, and the common prefixes as folders.
   */
  async list(path: string, signal?: AbortSignal): Promise<FileEntry[]> {
    const { bucket, key } = parseS3Uri(path);
    const prefix = key === "" || key.endsWith("/") ? key : `${key}/`;
    const entries: FileEntry[] = [];
    let token: string | undefined;
    try {
      do {
        const page = await this.client.send(
          new ListObjectsV2Command({
            Bucket: bucket,
            Prefix: prefix,
            Delimiter: "/",
            ...(token ? { ContinuationToken: token } : {}),
          }),
          signal ? { abortSignal: signal } : {},
        );
        for (const o of page.Contents ?? []) {
          if (o.Key)
            entries.push({
              name: o.Key.slice(prefix.length),
              folder: false,
              size: o.Size ?? 0,
              modifiedMs: o.LastModified?.getTime() ?? 0,
            });
        }
        for (const p of page.CommonPrefixes ?? []) {
          if (p.Prefix)
            entries.push({
              name: p.Prefix.slice(prefix.length).replace(/\/$/, ""),
              folder: true,
              size: 0,
              modifiedMs: 0,
            });
        }
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
    } catch (error) {
      throw toCheckpointError(error, "list", path, signal);
    }
    return entries;
  }

  /** @inheritDoc A no-op: S3 has no directories. */
  async mkdir(_path: string): Promise<void> {}

  /**
   * @inheritDoc
   * HeadObject: false only when S3 says not found; every other error is thrown.
   */
  async exists(path: string): Promise<boolean> {
    const { bucket, key } = parseS3Uri(path);
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      return true;
    } catch (error) {
      if (isNotFound(error)) return false;
      throw toCheckpointError(error, "stat", path);
    }
  }

  /** @inheritDoc DeleteObject; a missing key is not an error. */
  async rmFile(path: string): Promise<void> {
    const { bucket, key } = parseS3Uri(path);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    } catch (error) {
      if (!isNotFound(error)) throw toCheckpointError(error, "delete", path);
    }
  }

  /** @inheritDoc True for a parsable `s3://` URI: {@link isS3Uri}, the one check. */
  readonly validateCheckpointId: (checkpointId: string) => boolean = isS3Uri;
}
