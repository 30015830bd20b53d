// @dcpjs/s3/extend — what a custom S3 reader or an S3-like backend is built from: checked and
// resumable ranged GETs, the readers themselves, the DCP-optimized coalescing rule (data the read
// scheduler applies), the read cache's pieces, the error mapping, the URI helpers, the multipart
// write stream and the socket-guarding agents.
export { resolveTransferSettings, type S3TransferSettings } from "./client-config.js";
export {
  type CheckedBody,
  getChecked,
  getRange,
  getRangeInto,
  headObject,
  headSize,
  type S3ObjectRef,
} from "./ranged-get.js";
export type { CachedObjectId } from "./read-cache.js";
export { BLOCKS_IN_FLIGHT, CachedS3Reader } from "./readers/cached-reader.js";
export {
  DCPOptimizedS3Reader,
  dcpOptimizedRule,
  MAX_RUN_BYTES,
  RANGE_GET_BYTES,
  type RunRange,
} from "./readers/dcp-optimized-reader.js";
export { RangeBasedS3Reader } from "./readers/range-based-reader.js";
export type { ReaderTarget } from "./readers/reader-constructor.js";
export { SequentialS3Reader } from "./readers/sequential-reader.js";
export { s3StorageBackend } from "./register.js";
export { isNotFound, s3ErrorInfo, toCheckpointError } from "./s3-errors.js";
export { RENAME_DELETE_ATTEMPTS } from "./s3-file-system.js";
export { escapePath, joinS3Path } from "./s3-uri.js";
export { S3WriteStream } from "./s3-write-stream.js";
export { GuardedHttpAgent, GuardedHttpsAgent, guardSocket } from "./socket-guard.js";
export {
  isThrottle,
  type ResolvedThrottleOptions,
  resolveThrottleOptions,
  throttleDelayMs,
  throttleKey,
} from "./throttle.js";
