import { CheckpointError, NotFoundError } from "@dcpjs/core";

/** The `name` of a `DOMException` (or any error), or `""`. */
export function domErrorName(error: unknown): string {
  return typeof error === "object" && error !== null && typeof (error as { name?: unknown }).name === "string"
    ? (error as { name: string }).name
    : "";
}

/** Whether an OPFS call failed because the entry is missing or of the other kind (file vs directory). */
export function isMissing(error: unknown): boolean {
  const name = domErrorName(error);
  return name === "NotFoundError" || name === "TypeMismatchError";
}

/**
 * Maps an OPFS error to the library's: a missing entry → {@link NotFoundError}; a
 * {@link CheckpointError} as it is; anything else (`QuotaExceededError`,
 * `NoModificationAllowedError` when another tab holds the file, …) → `IO_ERROR` naming the step.
 *
 * @param error - what the OPFS call threw.
 * @param what - the step, for the message ("write", "open", …).
 * @param path - the `opfs://` path.
 */
export function opfsError(error: unknown, what: string, path: string): CheckpointError {
  if (error instanceof CheckpointError) return error;
  if (isMissing(error)) return new NotFoundError(path, { cause: error });
  const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return new CheckpointError("IO_ERROR", `Failed to ${what} ${path} in OPFS: ${message}`, { cause: error });
}
