import { CheckpointError, NotFoundError } from "@dcpjs/core";

interface SdkError {
  readonly name?: string;
  readonly message?: string;
  readonly Code?: string;
  readonly $metadata?: { readonly httpStatusCode?: number };
}

/**
 * The S3 error code (e.g. `NoSuchKey`) and HTTP status of an SDK error.
 *
 * @param error - what the SDK threw (anything: a non-object gives `Error` and no status).
 */
export function s3ErrorInfo(error: unknown): { name: string; status: number | undefined } {
  const e = (typeof error === "object" && error !== null ? error : {}) as SdkError;
  return { name: e.Code ?? e.name ?? "Error", status: e.$metadata?.httpStatusCode };
}

/**
 * Whether an SDK error means "no such object" (HeadObject `NotFound`, GetObject `NoSuchKey`, 404).
 *
 * @param error - what the SDK threw.
 */
export function isNotFound(error: unknown): boolean {
  const { name, status } = s3ErrorInfo(error);
  return (
    name === "NoSuchKey" ||
    name === "NotFound" ||
    (status === 404 && name !== "NoSuchBucket" && name !== "NoSuchUpload")
  );
}

/**
 * Maps an SDK error to the library's errors: a missing key → {@link NotFoundError}; a missing
 * bucket → `NOT_FOUND`; refused credentials or permissions (401/403) → `ACCESS_DENIED`; a failed
 * `If-Match` (412) → `IO_ERROR` saying the object was replaced; an abort (`AbortError`, or an
 * `ABORTED` {@link CheckpointError}) → `ABORTED` only when `signal` — the caller's own — fired,
 * else `IO_ERROR` naming what stopped the request (a socket cut short, lib-storage or a
 * middleware aborting on its own): nobody asked for it, so a retry policy keyed on `code` may
 * retry it; anything else → `IO_ERROR`. Any other {@link CheckpointError} passes through.
 *
 * @param error - what the SDK threw.
 * @param action - what was attempted, e.g. `read`.
 * @param uri - the object's `s3://` URI.
 * @param signal - the caller's signal for this request; without one, no abort is the caller's.
 */
export function toCheckpointError(
  error: unknown,
  action: string,
  uri: string,
  signal?: AbortSignal,
): CheckpointError {
  if (isAbort(error) && !signal?.aborted) {
    const { name } = s3ErrorInfo(error);
    const message = error instanceof Error ? error.message : String(error);
    return new CheckpointError(
      "IO_ERROR",
      `Failed to ${action} ${uri}: the request was stopped though the caller's signal did not fire (${name}: ${message})`,
      { cause: error },
    );
  }
  if (error instanceof CheckpointError) return error;
  const { name, status } = s3ErrorInfo(error);
  const message = error instanceof Error ? error.message : String(error);
  if (name === "NoSuchBucket") {
    const bucket = uri.slice(5).split("/")[0];
    return new CheckpointError(
      "NOT_FOUND",
      `Expected bucket "${bucket}" to exist (to ${action} ${uri}), but S3 says NoSuchBucket`,
      { cause: error },
    );
  }
  if (isNotFound(error)) return new NotFoundError(uri, { cause: error });
  if (
    status === 401 ||
    status === 403 ||
    ["InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"].includes(name)
  ) {
    return new CheckpointError(
      "ACCESS_DENIED",
      `S3 refused to ${action} ${uri} (${name}): expected credentials that may access it — check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the SDK's credential chain) and the endpoint`,
      { cause: error },
    );
  }
  if (status === 412 || name === "PreconditionFailed")
    return new CheckpointError(
      "IO_ERROR",
      `Expected ${uri} to stay the version first seen while it was read (If-Match), but it was replaced: ${action} refused (412)`,
      { cause: error },
    );
  if (isAbort(error))
    return new CheckpointError("ABORTED", `Aborted while trying to ${action} ${uri}`, { cause: error });
  return new CheckpointError("IO_ERROR", `Failed to ${action} ${uri}: ${name}: ${message}`, { cause: error });
}

/** An abort of any origin: the SDK's or lib-storage's `AbortError`, or our own `ABORTED`. */
function isAbort(error: unknown): boolean {
  if (error instanceof CheckpointError) return error.code === "ABORTED";
  return s3ErrorInfo(error).name === "AbortError";
}
