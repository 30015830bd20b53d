// @dcpjs/core/ops — the operations on whole checkpoints that `dcp` runs, as a library: list,
// inspect, verify, copy, remove, gc, convert and the cleanup of stray uploads. Each takes a
// folder or a URI of any registered backend (`s3://` once `@dcpjs/s3` is imported), typed
// `readonly` options with `onProgress` and an `AbortSignal`, and returns a typed report.

export {
  type CheckpointListing,
  DEFAULT_LIST_DEPTH,
  type ListCheckpointsOptions,
  latestCheckpoint,
  listCheckpoints,
} from "../checkpoints.js"; // list lives beside save: a training program resumes with latestCheckpoint
export {
  type ConvertBatch,
  type ConvertFormat,
  type ConvertOptions,
  type ConvertSummary,
  convertCheckpoint,
  DEFAULT_CONVERT_WINDOW_BYTES,
} from "../convert.js"; // convert (and `dcp export`) lives beside save and load, as DCP's format utilities
export { BASE_LEASE_GRACE_MS } from "../storage/references.js"; // the lease grace of rm and gc (docs/format.md)
export { type CleanupUploadsOptions, cleanupUploads } from "./cleanup-uploads.js";
export {
  COPY_PIECE_BYTES,
  type CopyOptions,
  type CopyReport,
  type CopyVerification,
  copyCheckpoint,
  REPOSITORY_FILE_PATTERN,
} from "./copy.js";
export { collectGarbage, type GarbageOptions } from "./gc.js";
export {
  describeCheckpoint,
  type InspectEntry,
  type InspectOptions,
  type InspectReference,
  type InspectReport,
  inspectCheckpoint,
} from "./inspect.js";
export type { OperationProgress } from "./progress.js";
export { type RemovalReport, type RemoveOptions, removeCheckpoint } from "./remove.js";
export {
  type EntryChecker,
  VERIFY_BATCH_BYTES,
  type VerifyOptions,
  type VerifyReport,
  verifyCheckpoint,
} from "./verify.js";
