import {
  GetObjectCommand,
  type GetObjectCommandOutput,
  HeadObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { CheckpointError } from "@dcpjs/core";
import { maxAttemptsOf } from "./client-config.js";
import { s3ErrorInfo, toCheckpointError } from "./s3-errors.js";
import { retryS3, S3_RETRY_MIN_DELAY_MS } from "./s3-retry.js";
import { ThrottledError } from "./throttle.js";

/** An object to read: the client, its bucket and key, and its URI for messages. */
export interface S3ObjectRef {
  /** The client. */
  readonly client: S3Client;
  /** The bucket. */
  readonly bucket: string;
  /** The key. */
  readonly key: string;
  /** `s3://bucket/key`, for error messages. */
  readonly uri: string;
  /**
   * Sent as `If-Match` with every GET: S3 answers 412 (an `IO_ERROR` naming the change) when the
   * object is no longer this version.
   */
  readonly ifMatch?: string;
}

/**
 * Checks that an object reference names a bucket and a key, as s3torchconnector's readers.
 *
 * @param ref - the object.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT`: "Bucket should be specified" or "Key should
 * be specified".
 */
export function assertObjectRef(ref: S3ObjectRef): void {
  if (typeof ref.bucket !== "string" || ref.bucket === "")
    throw new CheckpointError("INVALID_ARGUMENT", "Bucket should be specified");
  if (typeof ref.key !== "string" || ref.key === "")
    throw new CheckpointError("INVALID_ARGUMENT", "Key should be specified");
}

/**
 * A GET's body as chunks, which fails unless exactly the expected number of bytes arrives.
 */
export interface CheckedBody {
  /** The number of bytes the response must deliver. */
  readonly length: number;
  /** Next chunk, or `undefined` at the end (after checking nothing was missing). */
  next(): Promise<Uint8Array | undefined>;
  /** Stops reading and releases the socket. */
  destroy(): void;
}

/**
 * Whether a failed GET (or its body) is worth another attempt: transport or length faults, not the
 * caller's abort, not a failed `If-Match` (the object was replaced; asking again cannot help), and
 * not a {@link ThrottledError} (the client's throttling already retried it for its whole budget).
 */
function retryable(error: unknown, signal: AbortSignal | undefined): boolean {
  if (signal?.aborted || !(error instanceof CheckpointError) || error instanceof ThrottledError) return false;
  if (s3ErrorInfo(error.cause).status === 412) return false;
  return error.code === "IO_ERROR" || error.code === "TRUNCATED" || error.code === "ABORTED";
}

/** An `ABORTED` that the caller did not ask for (a socket timeout, a reset) is an `IO_ERROR`. */
function rootCause(error: unknown, signal: AbortSignal | undefined, where: string): unknown {
  if (error instanceof CheckpointError && error.code === "ABORTED" && !signal?.aborted)
    return new CheckpointError("IO_ERROR", `The connection for ${where} was closed: ${error.message}`, {
      cause: error,
    });
  return error;
}

/** One GET and its checked body, without retries. */
async function openChecked(
  ref: S3ObjectRef,
  start: number | undefined,
  end: number | undefined,
  expectedLength: number | undefined,
  signal: AbortSignal | undefined,
): Promise<CheckedBody> {
  const range = start === undefined ? undefined : `bytes=${start}-${end! - 1}`;
  let response: GetObjectCommandOutput;
  try {
    response = await ref.client.send(
      new GetObjectCommand({
        Bucket: ref.bucket,
        Key: ref.key,
        ...(range ? { Range: range } : {}),
        ...(ref.ifMatch ? { IfMatch: ref.ifMatch } : {}),
      }),
      signal ? { abortSignal: signal } : {},
    );
  } catch (error) {
    throw toCheckpointError(error, "read", ref.uri, signal);
  }
  const body = response.Body as unknown as
    | (AsyncIterable<Uint8Array> & { destroy?: () => void; on?: (event: "error", f: () => void) => void })
    | undefined;
  // Its errors reach the reader through the iterator; one after the reader stopped (a reset of a
  // body it dropped) must not be thrown as an unhandled 'error' event.
  body?.on?.("error", () => {});
  const where = range ? `${ref.uri} (${range})` : ref.uri;
  const expected = start === undefined ? (expectedLength ?? response.ContentLength) : end! - start;
  if (expected === undefined || response.ContentLength !== expected || !body) {
    body?.destroy?.();
    throw new CheckpointError(
      "TRUNCATED",
      `Expected ${expected ?? "a known number of"} bytes from ${where}, the response announces ${response.ContentLength}`,
    );
  }
  const iterator = body[Symbol.asyncIterator]();
  let received = 0;
  return {
    length: expected,
    async next() {
      let r: IteratorResult<Uint8Array>;
      try {
        r = await iterator.next();
      } catch (error) {
        throw toCheckpointError(error, "read", where, signal);
      }
      if (r.done) {
        if (received !== expected)
          throw new CheckpointError(
            "TRUNCATED",
            `Expected ${expected} bytes from ${where}, the stream ended after ${received}`,
          );
        return undefined;
      }
      received += r.value.byteLength;
      if (received > expected) {
        body.destroy?.();
        throw new CheckpointError(
          "TRUNCATED",
          `Expected ${expected} bytes from ${where}, received more (${received})`,
        );
      }
      return r.value;
    },
    destroy() {
      body.destroy?.();
    },
  };
}

/**
 * Sends a GET for `[start, end)` (or the whole object when `start` is undefined) and checks its
 * `Content-Length`; the returned body then checks that no byte is missing or extra. A GET that
 * fails — in its response or in the middle of its body (reset, truncation, a wrong length) — is
 * retried from the first byte not yet delivered, as a ranged GET, under the one retry policy
 * ({@link retryS3}: exponential backoff with jitter, an abortable pause), up to the client's
 * `maxAttempts` ({@link maxAttemptsOf}) in all — the GET and every resume of its body share them —
 * on top of the SDK's own retries of each request.
 *
 * @param ref - the object.
 * @param start - first byte, inclusive; whole object when undefined.
 * @param end - last byte, exclusive (required with `start`).
 * @param signal - aborts the request and the retries.
 * @param expectedLength - for a whole-object GET: the length it must have (e.g. from HEAD).
 * @throws {@link CheckpointError} `TRUNCATED` when the server keeps sending a different length,
 * `IO_ERROR` for a connection that keeps failing, `ABORTED` only when `signal` fired, and the
 * mapped SDK errors (`NOT_FOUND`, `ACCESS_DENIED`), which are not retried.
 */
export async function getChecked(
  ref: S3ObjectRef,
  start?: number,
  end?: number,
  signal?: AbortSignal,
  expectedLength?: number,
): Promise<CheckedBody> {
  const attempts = await maxAttemptsOf(ref.client);
  const where = start === undefined ? ref.uri : `${ref.uri} (bytes=${start}-${end! - 1})`;
  // One budget for the GET and every resume of its body: `attempts` in all, and the backoff goes on
  // growing from one step to the next (each step is a `retryS3` of its own: the reads are pulled).
  let failures = 0;
  const step = async <T>(operation: () => Promise<T>): Promise<T> => {
    try {
      return await retryS3(operation, {
        attempts: attempts - failures,
        minDelayMs: S3_RETRY_MIN_DELAY_MS * 2 ** failures,
        shouldRetry: (error) => retryable(error, signal),
        onRetry: () => void failures++,
        ...(signal ? { signal } : {}),
      });
    } catch (error) {
      throw rootCause(error, signal, where);
    }
  };
  const body = await step(() => openChecked(ref, start, end, expectedLength, signal));
  const base = start ?? 0;
  const total = body.length;
  let received = 0;
  let current: CheckedBody | undefined = body;
  return {
    length: total,
    next: () =>
      step(async () => {
        try {
          if (!current) {
            if (received === total) return undefined;
            // Resume from the first byte not yet delivered.
            current = await openChecked(ref, base + received, base + total, undefined, signal);
          }
          const chunk = await current.next();
          if (chunk) received += chunk.byteLength;
          return chunk;
        } catch (error) {
          current?.destroy();
          current = undefined;
          throw error;
        }
      }),
    destroy() {
      current?.destroy();
      current = undefined;
    },
  };
}

/**
 * Reads `[start, start + target.byteLength)` of an object into `target` with one ranged GET.
 *
 * @param ref - the object.
 * @param start - first byte, inclusive.
 * @param target - where the bytes go; its length is the range's length.
 * @param signal - aborts the request.
 * @throws as {@link getChecked}.
 */
export async function getRangeInto(
  ref: S3ObjectRef,
  start: number,
  target: Uint8Array,
  signal?: AbortSignal,
): Promise<void> {
  if (target.byteLength === 0) return;
  const body = await getChecked(ref, start, start + target.byteLength, signal);
  let at = 0;
  for (let chunk = await body.next(); chunk; chunk = await body.next()) {
    target.set(chunk, at);
    at += chunk.byteLength;
  }
}

/**
 * Reads `[start, end)` of an object into one new buffer.
 *
 * @param ref - the object.
 * @param start - first byte, inclusive.
 * @param end - last byte, exclusive.
 * @param signal - aborts the request.
 * @throws as {@link getChecked}.
 */
export async function getRange(
  ref: S3ObjectRef,
  start: number,
  end: number,
  signal?: AbortSignal,
): Promise<Uint8Array> {
  const out = new Uint8Array(end - start);
  await getRangeInto(ref, start, out, signal);
  return out;
}

/**
 * The object's size and ETag from one HEAD request.
 *
 * @param ref - the object.
 * @param signal - aborts the request.
 * @throws the mapped SDK errors (`NOT_FOUND` for a missing key).
 */
export async function headObject(
  ref: S3ObjectRef,
  signal?: AbortSignal,
): Promise<{ size: number; etag: string | undefined }> {
  try {
    const head = await ref.client.send(
      new HeadObjectCommand({ Bucket: ref.bucket, Key: ref.key }),
      signal ? { abortSignal: signal } : {},
    );
    return { size: head.ContentLength ?? 0, etag: head.ETag };
  } catch (error) {
    throw toCheckpointError(error, "stat", ref.uri, signal);
  }
}

/**
 * The object's size from a HEAD request.
 *
 * @param ref - the object.
 * @param signal - aborts the request.
 * @throws the mapped SDK errors (`NOT_FOUND` for a missing key).
 */
export async function headSize(ref: S3ObjectRef, signal?: AbortSignal): Promise<number> {
  return (await headObject(ref, signal)).size;
}

/**
 * Checks that `[offset, offset + length)` lies inside an object of `size` bytes.
 *
 * @param uri - the object's `s3://` URI, for the message.
 * @param size - the object's size in bytes.
 * @param offset - the first byte wanted.
 * @param length - how many bytes, from `offset`.
 * @throws {@link CheckpointError} `TRUNCATED` otherwise.
 */
export function checkInside(uri: string, size: number, offset: number, length: number): void {
  if (offset + length > size) {
    throw new CheckpointError(
      "TRUNCATED",
      `Expected ${length} bytes at offset ${offset} of ${uri}, but the object has ${size} bytes`,
    );
  }
}
