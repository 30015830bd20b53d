import { AbortMultipartUploadCommand, ListMultipartUploadsCommand, type S3Client } from "@aws-sdk/client-s3";
import { throwIfAborted } from "@dcpjs/core/extend";
import { createS3Client, type S3ClientConfig } from "./client-config.js";
import { toCheckpointError } from "./s3-errors.js";
import { parseS3Uri } from "./s3-uri.js";

/** Options of {@link abortIncompleteUploads}. */
export interface AbortIncompleteUploadsOptions {
  /** A client to use. @default one built from `clientConfig` */
  readonly client?: S3Client;
  /** Client settings when no client is given. */
  readonly clientConfig?: S3ClientConfig;
  /** Only abort uploads started before this time. @default now (all of them) */
  readonly startedBefore?: Date;
  /**
   * Which uploads to keep: called once per listed page of uploads, after that page was listed,
   * with its keys (object keys in the bucket); returns those to keep. `dcp gc` keeps the uploads of
   * a save whose lease is live, reading the leases after the uploads were listed (a save writes its
   * lease before it starts an upload). @default none kept
   */
  readonly keep?: (keys: readonly string[]) => Promise<ReadonlySet<string>>;
  /** Stops before each listing and abort (and cancels the request in flight); throws `ABORTED`. */
  readonly signal?: AbortSignal;
}

/**
 * Aborts every incomplete multipart upload under a checkpoint's prefix: what a save leaves behind
 * when a rank is killed mid-upload (a live rank aborts its own uploads when it fails). Run it only
 * when no save is writing to that prefix, or pass `startedBefore`. An S3 lifecycle rule
 * (`AbortIncompleteMultipartUpload`) does the same for a whole bucket after some days.
 *
 * @param uri - the checkpoint's `s3://bucket/prefix`.
 * @param options - see {@link AbortIncompleteUploadsOptions}.
 * @returns the keys whose uploads were aborted.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` for a bad URI, `ABORTED` when `signal`
 * aborts, and mapped S3 errors.
 */
export async function abortIncompleteUploads(
  uri: string,
  options: AbortIncompleteUploadsOptions = {},
): Promise<string[]> {
  const { bucket, key } = parseS3Uri(uri);
  const prefix = key === "" || key.endsWith("/") ? key : `${key}/`;
  const client = options.client ?? createS3Client(options.clientConfig);
  try {
    return await abortUploadsUnder(client, bucket, prefix, {
      startedBefore: options.startedBefore ?? new Date(),
      ...(options.keep ? { keep: options.keep } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
  } catch (error) {
    throwIfAborted(options.signal);
    throw toCheckpointError(error, "abort the multipart uploads under", uri);
  } finally {
    if (!options.client) client.destroy();
  }
}

/**
 * Aborts the incomplete multipart uploads whose keys start with `prefix` (or equal `exactKey`).
 * An upload that is gone by the time it is aborted (`NoSuchUpload`: a retried abort whose first
 * answer was lost) is skipped; an abort that fails does not stop the others.
 *
 * @param client - the client.
 * @param bucket - the bucket.
 * @param prefix - the key prefix to list.
 * @param filter - `exactKey`: only that key; `startedBefore`: only uploads initiated before it;
 *   `keep`: not the keys it returns for each page (asked after the page is listed); `signal`:
 *   stops before each request and cancels the one in flight.
 * @returns the keys whose uploads were aborted (a key once per upload).
 * @throws the SDK's errors, unmapped: a failed listing at once, else the first failed abort after
 *   trying every other upload.
 */
export async function abortUploadsUnder(
  client: S3Client,
  bucket: string,
  prefix: string,
  filter: {
    readonly exactKey?: string;
    readonly startedBefore?: Date;
    readonly keep?: (keys: readonly string[]) => Promise<ReadonlySet<string>>;
    readonly signal?: AbortSignal;
  } = {},
): Promise<string[]> {
  const aborted: string[] = [];
  let first: { readonly error: unknown } | undefined;
  let keyMarker: string | undefined;
  let uploadIdMarker: string | undefined;
  const abortSignal = filter.signal;
  for (;;) {
    throwIfAborted(abortSignal);
    const page = await client.send(
      new ListMultipartUploadsCommand({
        Bucket: bucket,
        Prefix: prefix,
        ...(keyMarker ? { KeyMarker: keyMarker } : {}),
        ...(uploadIdMarker ? { UploadIdMarker: uploadIdMarker } : {}),
      }),
      abortSignal ? { abortSignal } : {},
    );
    const kept = filter.keep ? await filter.keep((page.Uploads ?? []).map((u) => u.Key ?? "")) : undefined;
    for (const u of page.Uploads ?? []) {
      if (kept?.has(u.Key ?? "")) continue;
      if (filter.startedBefore && u.Initiated && u.Initiated > filter.startedBefore) continue;
      if (filter.exactKey !== undefined && u.Key !== filter.exactKey) continue;
      throwIfAborted(abortSignal);
      try {
        await client.send(
          new AbortMultipartUploadCommand({ Bucket: bucket, Key: u.Key!, UploadId: u.UploadId! }),
          abortSignal ? { abortSignal } : {},
        );
        aborted.push(u.Key!);
      } catch (error) {
        // Gone already: a retried abort whose first answer was lost, or another cleaner.
        if ((error as { name?: string }).name === "NoSuchUpload") continue;
        first ??= { error };
      }
    }
    if (!page.IsTruncated) break;
    keyMarker = page.NextKeyMarker;
    uploadIdMarker = page.NextUploadIdMarker;
  }
  if (first) throw first.error;
  return aborted;
}
