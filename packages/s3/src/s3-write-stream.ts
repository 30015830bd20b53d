import { once } from "node:events";
import { PassThrough } from "node:stream";
import type { S3Client } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { CheckpointError } from "@dcpjs/core";
import type { FileWriteStream } from "@dcpjs/core/extend";
import type { S3TransferSettings } from "./client-config.js";
import { abortUploadsUnder } from "./multipart-cleanup.js";
import { toCheckpointError } from "./s3-errors.js";

/**
 * Writes one object as a streaming multipart upload (lib-storage `Upload`), as s3torchconnector's
 * `S3Writer`: bytes pass through a pipe into parts of `partSize` bytes, `queueSize` parts upload
 * concurrently, and an object smaller than one part is a single PutObject.
 *
 * Memory: writes are cut into whole parts (small writes are gathered into one part-sized
 * buffer; large ones are cut into views of the caller's memory), so lib-storage never joins more
 * than two parts: at most `(2 × queueSize + 5) × partSize` bytes beyond the caller's data, whatever
 * the item sizes (`pnpm bench memory` measures it).
 * If a write fails, the stream is aborted, or its signal fires, the multipart upload is aborted
 * (no orphan parts) before {@link S3WriteStream.abort} resolves, without waiting for requests
 * in flight.
 */
export class S3WriteStream implements FileWriteStream {
  readonly #pipe: PassThrough;
  readonly #done: Promise<unknown>;
  #written = 0;
  /** The part being filled from small writes, and how many of its bytes are filled. */
  #stage: Buffer | undefined;
  #staged = 0;
  #failure: unknown;
  #closed = false;
  readonly #onAbort: () => void;
  readonly #upload: Upload;
  readonly #client: S3Client;
  readonly #bucket: string;
  readonly #key: string;
  readonly #partSize: number;

  /**
   * @param client - the S3 client.
   * @param bucket - the bucket.
   * @param key - the key.
   * @param uri - `s3://bucket/key`, for messages.
   * @param settings - part size and queue size.
   * @param signal - aborts the upload.
   */
  constructor(
    client: S3Client,
    bucket: string,
    key: string,
    private readonly uri: string,
    settings: S3TransferSettings,
    private readonly signal?: AbortSignal,
  ) {
    this.#client = client;
    this.#bucket = bucket;
    this.#key = key;
    this.#partSize = settings.partSize;
    this.#pipe = new PassThrough({ highWaterMark: settings.partSize });
    // Pipe errors (aborts) surface through the upload's done(); never as an unhandled 'error'.
    this.#pipe.on("error", () => {});
    const upload = new Upload({
      client,
      params: { Bucket: bucket, Key: key, Body: this.#pipe },
      partSize: settings.partSize,
      queueSize: settings.queueSize,
      leavePartsOnError: false,
    });
    // Failures (including aborts, which destroy the pipe) reach done() only after lib-storage has
    // sent AbortMultipartUpload, so awaiting done() means no parts are left behind.
    this.#done = upload.done().catch((error: unknown) => {
      this.#failure = error;
      throw error;
    });
    this.#done.catch(() => {});
    this.#upload = upload;
    this.#onAbort = () => {
      // lib-storage sends no signal with its UploadPart requests: abort() settles done() at once,
      // and abort() below removes the multipart upload itself.
      void upload.abort();
      this.#pipe.destroy(
        new CheckpointError("ABORTED", `Upload of ${uri} aborted`, { cause: signal?.reason }),
      );
    };
    signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  /** @inheritDoc */
  async write(bytes: Uint8Array): Promise<void> {
    if (this.#closed)
      throw new CheckpointError("INVALID_ARGUMENT", `Cannot write to ${this.uri} after close`);
    this.#checkFailure();
    this.#written += bytes.byteLength;
    // Hand lib-storage whole parts only: it concatenates whatever a part straddles, so
    // one large item arriving after a few small ones would otherwise be copied whole.
    const part = this.#partSize;
    let at = 0;
    while (at < bytes.byteLength) {
      if (this.#staged === 0 && bytes.byteLength - at >= part) {
        await this.#push(bytes.subarray(at, at + part)); // straight from the caller's memory
        at += part;
        continue;
      }
      this.#stage ??= Buffer.allocUnsafe(part);
      const n = Math.min(part - this.#staged, bytes.byteLength - at);
      this.#stage.set(bytes.subarray(at, at + n), this.#staged);
      this.#staged += n;
      at += n;
      if (this.#staged === part) {
        const full = this.#stage;
        this.#stage = undefined; // the upload keeps it; the next part gets a new buffer
        this.#staged = 0;
        await this.#push(full);
      }
    }
    this.#checkFailure();
  }

  /** @inheritDoc (the buffers are copied into whole parts, as {@link S3WriteStream.write} does) */
  async writev(parts: readonly Uint8Array[]): Promise<void> {
    for (const part of parts) await this.write(part);
  }

  /** Writes one part into the pipe, waiting for it to drain (or the upload to fail). */
  async #push(part: Uint8Array): Promise<void> {
    if (!this.#pipe.write(part)) {
      await Promise.race([once(this.#pipe, "drain"), this.#done]).catch((error: unknown) => {
        throw this.#toError(error);
      });
    }
    this.#checkFailure();
  }

  #checkFailure(): void {
    if (this.signal?.aborted)
      throw new CheckpointError("ABORTED", `Upload of ${this.uri} aborted`, { cause: this.signal.reason });
    if (this.#failure !== undefined) throw this.#toError(this.#failure);
  }

  /**
   * A failure of the upload as the caller sees it: `ABORTED` only when this stream's signal fired.
   * An abort nobody here asked for — lib-storage's `AbortError`, a request cut short — is an
   * `IO_ERROR` naming what S3 said (`NoSuchUpload` when someone else, such as `dcp gc`, aborted
   * the multipart upload).
   */
  #toError(error: unknown): CheckpointError {
    if (this.signal?.aborted)
      return new CheckpointError("ABORTED", `Upload of ${this.uri} aborted`, { cause: this.signal.reason });
    return toCheckpointError(error, "upload", this.uri, this.signal);
  }

  /** @inheritDoc */
  tell(): number {
    return this.#written;
  }

  /** @inheritDoc S3 objects are durable once the upload completes: a no-op. */
  async sync(): Promise<void> {}

  /**
   * @inheritDoc Completes the upload; idempotent. After a multipart upload, aborts any other
   * incomplete upload of this key: one that a retried CreateMultipartUpload started when the
   * response to the first was lost (a key is written by one save only, so no other writer owns it).
   */
  async close(): Promise<void> {
    const first = !this.#closed;
    if (first) {
      this.#closed = true;
      if (this.#staged > 0) {
        const last = this.#stage!.subarray(0, this.#staged);
        this.#stage = undefined;
        this.#staged = 0;
        try {
          await this.#push(last);
        } catch (error) {
          this.signal?.removeEventListener("abort", this.#onAbort);
          throw error;
        }
      }
      this.#pipe.end();
    }
    try {
      await this.#done;
    } catch (error) {
      throw this.#toError(error);
    } finally {
      this.signal?.removeEventListener("abort", this.#onAbort);
    }
    if (first && this.#written > this.#partSize) await this.#abortStrayUploads();
  }

  /**
   * @inheritDoc Stops the upload at once (requests in flight are left to time out), then aborts
   * every incomplete multipart upload of this key and waits until they are gone.
   */
  async abort(reason?: unknown): Promise<void> {
    this.#closed = true;
    if (!this.#pipe.destroyed) {
      void this.#upload.abort();
      this.#pipe.destroy(new CheckpointError("ABORTED", `Upload of ${this.uri} aborted`, { cause: reason }));
    }
    await this.#done.catch(() => {});
    this.signal?.removeEventListener("abort", this.#onAbort);
    if (this.#written > this.#partSize) await this.#abortStrayUploads();
  }

  /** Aborts the incomplete uploads of this key; a failure is a process warning (the object is already decided). */
  async #abortStrayUploads(): Promise<void> {
    try {
      await abortUploadsUnder(this.#client, this.#bucket, this.#key, { exactKey: this.#key });
    } catch (error) {
      process.emitWarning(`dcpjs: could not check ${this.uri} for stray multipart uploads`, {
        code: "DCPJS_CLEANUP",
        detail: String(error),
      });
    }
  }
}
