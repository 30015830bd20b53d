import { CheckpointError } from "@dcpjs/core";

/** A bucket and key, parsed from an `s3://` URI. */
export interface S3Location {
  /** The bucket name (non-empty). */
  readonly bucket: string;
  /** The key; empty for the bucket's root. */
  readonly key: string;
}

/**
 * Splits an `s3://bucket/key` URI, as s3torchconnector's `parse_s3_uri`: the key may be empty
 * (`s3://bucket` → key `""`).
 *
 * @param uri - the URI.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT`: "Only s3:// URIs are supported" for another
 * scheme, "Bucket name must be non-empty" for `s3://` or `s3:///key`.
 */
export function parseS3Uri(uri: string): S3Location {
  if (typeof uri !== "string" || !uri.startsWith("s3://")) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Only s3:// URIs are supported, got ${JSON.stringify(uri)}`,
    );
  }
  const rest = uri.slice("s3://".length);
  const slash = rest.indexOf("/");
  const bucket = slash < 0 ? rest : rest.slice(0, slash);
  if (bucket.length === 0) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Bucket name must be non-empty, got ${JSON.stringify(uri)}`,
    );
  }
  return { bucket, key: slash < 0 ? "" : rest.slice(slash + 1) };
}

/**
 * Whether a checkpoint id is an `s3://` URI the S3 backend accepts, as s3torchconnector's
 * `validate_checkpoint_id`: the one check behind `S3FileSystem.validateCheckpointId`,
 * `S3StorageWriter.validateCheckpointId`, `S3StorageReader.validateCheckpointId` and the `s3://`
 * registration.
 *
 * @param uri - a checkpoint id.
 */
export function isS3Uri(uri: string): boolean {
  try {
    parseS3Uri(uri);
    return true;
  } catch {
    return false;
  }
}

/**
 * Refuses a checkpoint id that is not an `s3://` URI — what the S3 writer and reader check on
 * construction and on `reset`.
 *
 * @param checkpointId - a checkpoint id; `undefined` (keep the current one) passes.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT`, as {@link parseS3Uri}.
 */
export function assertS3CheckpointId(checkpointId: string | undefined): void {
  if (checkpointId !== undefined) parseS3Uri(checkpointId);
}

/**
 * URL-encodes each `/`-separated segment of a key, as s3torchconnector's `_escape_path` (Python's
 * `quote(segment, safe="")`): everything but letters, digits and `-_.~` is percent-encoded; the
 * slashes and empty segments are kept. CopyObject's `CopySource` needs this (the SDK does not).
 *
 * @param key - an object key.
 */
export function escapePath(key: string): string {
  return key
    .split("/")
    .map((s) =>
      encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`),
    )
    .join("/");
}

/**
 * Joins an `s3://` path and a relative path with exactly one `/`, as `os.path.join`.
 *
 * @param path - the base URI.
 * @param suffix - the relative path.
 */
export function joinS3Path(path: string, suffix: string): string {
  if (suffix.startsWith("/")) return suffix;
  return path.endsWith("/") ? `${path}${suffix}` : `${path}/${suffix}`;
}
