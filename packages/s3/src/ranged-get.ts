import {
  GetObjectCommand,
  type GetObjectCommandOutput,
  HeadObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { CheckpointError } from "@dcpjs/core";
import { toCheckpointError } from "./s3-errors.js";

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
 * Sends a GET for `[start, end)` (or the whole object when `start` is undefined) and checks its
 * `Content-Length`; the returned body then checks that no byte is missing or extra.
 *
 * @param ref - the object.
 * @param start - first byte, inclusive; whole object when undefined.
 * @param end - last byte, exclusive (required with `start`).
 * @param signal - aborts the request.
 * @throws {@link CheckpointError} `TRUNCATED` when the server sends a different length, and the
 * mapped SDK errors (`NOT_FOUND`, `ACCESS_DENIED`, `IO_ERROR`).
 */
export async function getChecked(
  ref: S3ObjectRef,
  start?: number,
  end?: number,
  signal?: AbortSignal,
): Promise<CheckedBody> {
  const range = start === undefined ? undefined : `bytes=${start}-${end! - 1}`;
  let response: GetObjectCommandOutput;
  try {
    response = await ref.client.send(
      new GetObjectCommand({ Bucket: ref.bucket, Key: ref.key, ...(range ? { Range: range } : {}) }),
      signal ? { abortSignal: signal } : {},
    );
  } catch (error) {
    throw toCheckpointError(error, "read", ref.uri);
  }
  const body = response.Body as unknown as (AsyncIterable<Uint8Array> & { destroy?: () => void }) | undefined;
  const where = range ? `${ref.uri} (${range})` : ref.uri;
  const expected = start === undefined ? response.ContentLength : end! - start;
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
        throw toCheckpointError(error, "read", where);
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
 * The object's size from a HEAD request.
 *
 * @param ref - the object.
 * @param signal - aborts the request.
 * @throws the mapped SDK errors (`NOT_FOUND` for a missing key).
 */
export async function headSize(ref: S3ObjectRef, signal?: AbortSignal): Promise<number> {
  try {
    const head = await ref.client.send(
      new HeadObjectCommand({ Bucket: ref.bucket, Key: ref.key }),
      signal ? { abortSignal: signal } : {},
    );
    return head.ContentLength ?? 0;
  } catch (error) {
    throw toCheckpointError(error, "stat", ref.uri);
  }
}

/**
 * Checks that `[offset, offset + length)` lies inside an object of `size` bytes.
 *
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
