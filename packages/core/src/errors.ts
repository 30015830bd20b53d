/**
 * Stable machine-readable codes carried by every {@link CheckpointError}.
 *
 * - `INVALID_ARGUMENT`: an option or argument is out of its documented range.
 * - `INVALID_STATE_DICT`: the state dict cannot be flattened (duplicate flat key, unsafe key, bad tensor).
 * - `CHECKPOINT_EXISTS`: `.metadata` already exists and `overwrite` is false.
 * - `ALREADY_EXISTS`: an exclusive rename found its target in place (a storage backend's code).
 * - `INCOMPLETE_CHECKPOINT`: the checkpoint folder has no `.metadata` (never committed).
 * - `NOT_FOUND`: a file or object the checkpoint refers to does not exist.
 * - `CHECKPOINT_SUPERSEDED`: a data file a load needed was removed because a newer save committed
 *   at the same id after the load read `.metadata` (the committed `.metadata` no longer refers to
 *   it). `load` starts again on the newer checkpoint by itself (every rank together) and reports
 *   this only when overwrites kept outrunning it; a damaged checkpoint stays `NOT_FOUND`.
 * - `SAVE_FILES_LOST`: just before its commit, a save found one of its own data files missing or
 *   of another size than it wrote (removed by `dcp gc` or another process while it ran); nothing
 *   was committed and the checkpoint it would have replaced is untouched.
 * - `MALFORMED_METADATA`: `.metadata` is not a valid dcpjs metadata file, or crosses a decoder limit.
 * - `MALFORMED_DATA`: a stored value's bytes passed their checksum but do not decode.
 * - `UNSAFE_PATH`: metadata names a file outside the checkpoint folder (also through a link), or one that is not a regular file.
 * - `TRUNCATED`: a data file holds fewer bytes than the metadata says.
 * - `CHECKSUM_MISMATCH`: an item's CRC-32 (CRC-32C in older checkpoints) differs from the one recorded at save time.
 * - `MISSING_KEY`: a state-dict key is absent from the checkpoint (strict load).
 * - `SIZE_MISMATCH`: a tensor's global shape differs from the saved one.
 * - `UNSUPPORTED_DTYPE`: a tensor has a dtype dcpjs has no type for (quantized `qint8` …, `bits8` …), or that the format written lacks (FP6 in torch, complex32/complex128 in safetensors).
 * - `DTYPE_MISMATCH`: a tensor's dtype differs from the saved one.
 * - `INVALID_PLAN`: the global save plan fails validation (bounds, overlap, coverage).
 * - `ABORTED`: the operation was aborted through its `AbortSignal`.
 * - `COLLECTIVE_FAILED`: a step failed on one or more ranks whose errors do not share one code
 *   ({@link CheckpointException}; when they do, the exception carries that code instead).
 * - `ACCESS_DENIED`: the storage refused the credentials or the permission (S3 401/403).
 * - `TIMEOUT`: ranks did not arrive at a collective in time, or the group's server did not answer (a multi-process group).
 * - `GROUP_CONFLICT`: two processes claimed one rank of a process group (two jobs on one group id).
 * - `SAVE_IN_PROGRESS`: an `asyncSave` is still running and the new one was told not to wait.
 * - `THROTTLED`: the storage kept asking for fewer requests (S3 `503 SlowDown`, `429`) for longer
 *   than the client's throttling deadline (`@dcpjs/s3`'s `throttle.timeoutMs`, 120 s by default)
 *   allowed; the request was retried with backoff all that time. Retry later, or slower — not at once.
 * - `SOURCE_CHANGED`: a file read over HTTP was replaced while it was being read (its ETag, or
 *   Last-Modified and length, differ from those pinned on first contact; a 412 to `If-Match`):
 *   nothing of the newer file was used. Load again to read the new version.
 * - `CHECKPOINT_REFERENCED`: `dcp rm` (or gc) was asked to remove a checkpoint that a committed
 *   incremental checkpoint references, or that an in-flight save holds a lease on; the message
 *   names them. Nothing was removed (`--force` removes it and says which ones it breaks).
 * - `BASE_REMOVED`: an incremental save's base is being removed (`dcp gc`/`rm` wrote its
 *   tombstone) or is gone; nothing was committed against it.
 * - `IO_ERROR`: the storage backend failed for another reason.
 */
export type CheckpointErrorCode =
  | "INVALID_ARGUMENT"
  | "INVALID_STATE_DICT"
  | "CHECKPOINT_EXISTS"
  | "ALREADY_EXISTS"
  | "INCOMPLETE_CHECKPOINT"
  | "NOT_FOUND"
  | "CHECKPOINT_SUPERSEDED"
  | "SAVE_FILES_LOST"
  | "MALFORMED_METADATA"
  | "MALFORMED_DATA"
  | "UNSAFE_PATH"
  | "TRUNCATED"
  | "CHECKSUM_MISMATCH"
  | "MISSING_KEY"
  | "SIZE_MISMATCH"
  | "UNSUPPORTED_DTYPE"
  | "DTYPE_MISMATCH"
  | "INVALID_PLAN"
  | "ABORTED"
  | "COLLECTIVE_FAILED"
  | "ACCESS_DENIED"
  | "TIMEOUT"
  | "GROUP_CONFLICT"
  | "SAVE_IN_PROGRESS"
  | "THROTTLED"
  | "SOURCE_CHANGED"
  | "CHECKPOINT_REFERENCED"
  | "BASE_REMOVED"
  | "IO_ERROR";

/**
 * The root of dcpjs's error hierarchy: every error the library throws on purpose is one of these.
 *
 * Catch it and switch on {@link CheckpointError.code}, which is stable across versions; the
 * message says what was expected and what was found, and `cause` holds the underlying error.
 */
export class CheckpointError extends Error {
  /** Stable machine-readable code. */
  readonly code: CheckpointErrorCode;

  /**
   * @param code - the stable code.
   * @param message - what was expected and what was found.
   * @param options - `cause`: the underlying error, if any.
   */
  constructor(code: CheckpointErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "CheckpointError";
    this.code = code;
  }
}

/** A stored item's bytes do not match their checksum (CRC-32, or CRC-32C), or are fewer than the metadata says. */
export class ChecksumMismatchError extends CheckpointError {
  /** The fully-qualified name of the state-dict entry whose bytes are damaged. */
  readonly fqn: string;
  /** The checksum recorded at save time (unsigned 32-bit). */
  readonly expected: number;
  /** The checksum of the bytes read back (unsigned 32-bit). */
  readonly actual: number;
  /** Which checksum: `CRC-32` (dcpjs since `.metadata` format version 2, zip members) or `CRC-32C`. */
  readonly algorithm: string;

  /**
   * @param fqn - the entry's fully-qualified name.
   * @param expected - the recorded checksum (unsigned 32-bit).
   * @param actual - the computed checksum (unsigned 32-bit).
   * @param where - a description of the location, e.g. `__0_0.distcp @ 128+64`.
   * @param algorithm - the checksum's name in the message. @default "CRC-32C"
   */
  constructor(fqn: string, expected: number, actual: number, where: string, algorithm = "CRC-32C") {
    super(
      "CHECKSUM_MISMATCH",
      `${algorithm} mismatch for "${fqn}" in ${where}: expected 0x${hex32(expected)}, found 0x${hex32(actual)}`,
    );
    this.name = "ChecksumMismatchError";
    this.fqn = fqn;
    this.expected = expected;
    this.actual = actual;
    this.algorithm = algorithm;
  }
}

/** `.metadata` is malformed, hostile, or of an unsupported format version. */
export class MetadataError extends CheckpointError {
  /**
   * @param message - what was expected and what was found.
   * @param options - `code` (default `MALFORMED_METADATA`; `UNSAFE_PATH` for escaping paths), `cause`.
   */
  constructor(message: string, options?: { code?: "MALFORMED_METADATA" | "UNSAFE_PATH"; cause?: unknown }) {
    super(options?.code ?? "MALFORMED_METADATA", message, options);
    this.name = "MetadataError";
  }
}

/** A file or object the operation needs does not exist (maps ENOENT, S3 `NoSuchKey` / 404). */
export class NotFoundError extends CheckpointError {
  /** The path or key that was not found. */
  readonly path: string;

  /**
   * @param path - the missing path or key.
   * @param options - `cause`: the backend's own error.
   */
  constructor(path: string, options?: { cause?: unknown }) {
    super("NOT_FOUND", `Expected ${path} to exist, but it was not found`, options);
    this.name = "NotFoundError";
    this.path = path;
  }
}

/** What one rank's failure looks like inside a {@link CheckpointException}. */
export interface RankFailure {
  /** The rank (0-based) that failed. */
  readonly rank: number;
  /** Its error's name, e.g. `CheckpointError`. */
  readonly name: string;
  /** Its error's message. */
  readonly message: string;
  /** Its `CheckpointErrorCode`, if it was a {@link CheckpointError}. */
  readonly code?: CheckpointErrorCode;
  /** The original error object when the rank ran in this process; absent across processes. */
  readonly error?: unknown;
}

/**
 * A collective step failed on one or more ranks; every rank of the group throws this same error.
 *
 * As DCP's `CheckpointException`: `failures` names exactly the ranks that failed and why.
 * The step is `"plan"`, `"write"` or `"read"`, as in DCP's `_DistWrapper`.
 *
 * Its `code` is the root cause where callers look: when every failing rank threw a
 * {@link CheckpointError} with the same code — always so for a one-process `save`/`load`, whose
 * one rank is the only failure — `code` is that code (`MISSING_KEY`, `CHECKSUM_MISMATCH`,
 * `ACCESS_DENIED`…), so a retry policy keyed on `code` needs no unwrapping. When the codes differ,
 * or a rank threw something other than a `CheckpointError`, `code` is `COLLECTIVE_FAILED`. Either
 * way it stays a `CheckpointException` (test `instanceof` to know a collective step failed), and
 * `failures` keep each rank's own code and message. Every rank derives `code` from the same
 * failures, so every rank throws the same code.
 */
export class CheckpointException extends CheckpointError {
  /** The collective step that failed: `plan`, `write`, `read`, or `metadata`. */
  readonly step: string;
  /** One entry per failing rank, in rank order. */
  readonly failures: readonly RankFailure[];

  /**
   * @param step - the step name.
   * @param failures - the failing ranks with their errors (at least one).
   */
  constructor(step: string, failures: readonly RankFailure[]) {
    const sorted = [...failures].sort((a, b) => a.rank - b.rank);
    const detail = sorted.map((f) => `rank ${f.rank}: ${f.name}: ${f.message}`).join("; ");
    const first = sorted[0]?.error;
    super(
      sharedCode(sorted) ?? "COLLECTIVE_FAILED",
      `Checkpoint step "${step}" failed on rank(s) [${sorted.map((f) => f.rank).join(", ")}]: ${detail}`,
      first === undefined ? undefined : { cause: first },
    );
    this.name = "CheckpointException";
    this.step = step;
    this.failures = sorted;
  }

  /** The failing ranks, ascending. */
  get failedRanks(): number[] {
    return this.failures.map((f) => f.rank);
  }
}

/** The code every failure carries, or undefined when they differ or one has none. */
function sharedCode(failures: readonly RankFailure[]): CheckpointErrorCode | undefined {
  const code = failures[0]?.code;
  return code !== undefined && failures.every((f) => f.code === code) ? code : undefined;
}

/**
 * Describes an error thrown on `rank` as a {@link RankFailure}.
 *
 * @param rank - the rank that threw.
 * @param error - whatever was thrown.
 * @returns a serialisable record that keeps the original error for in-process groups.
 */
export function toRankFailure(rank: number, error: unknown): RankFailure {
  if (error instanceof Error) {
    const code = error instanceof CheckpointError ? { code: error.code } : {};
    return { rank, name: error.name, message: error.message, ...code, error };
  }
  return { rank, name: "Error", message: String(error), error };
}

/**
 * Throws a {@link CheckpointError} with code `ABORTED` when `signal` is aborted.
 *
 * @param signal - the caller's signal, if any.
 * @throws {@link CheckpointError} `ABORTED` carrying `signal.reason` as its cause.
 */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) {
    throw new CheckpointError("ABORTED", "The operation was aborted", { cause: signal.reason });
  }
}

function hex32(n: number): string {
  return (n >>> 0).toString(16).padStart(8, "0");
}
