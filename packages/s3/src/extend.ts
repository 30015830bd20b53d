// @dcpjs/s3/extend — what a custom S3 reader or an S3-like backend is built from: checked and
// resumable ranged GETs, the readers themselves, the error mapping and the socket-guarding
// agents. One `export … from` per module, in module order.
export {
  type CheckedBody,
  getChecked,
  getRange,
  getRangeInto,
  headObject,
  headSize,
  type S3ObjectRef,
} from "./ranged-get.js";
export { CachedS3Reader } from "./readers/cached-reader.js";
export {
  DCPOptimizedS3Reader,
  dcpOptimizedRule,
  MAX_RUN_BYTES,
  type RunRange,
} from "./readers/dcp-optimized-reader.js";
export { RangeBasedS3Reader } from "./readers/range-based-reader.js";
export type { ReaderTarget } from "./readers/reader-constructor.js";
export { SequentialS3Reader } from "./readers/sequential-reader.js";
export type {
  S3BackendFileSystemOptions,
  S3BackendReaderOptions,
  S3BackendWriterOptions,
} from "./register.js";
export { isNotFound, toCheckpointError } from "./s3-errors.js";
export { GuardedHttpAgent, GuardedHttpsAgent } from "./socket-guard.js";
