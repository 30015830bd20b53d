// @dcpjs/s3 — checkpoints on S3 and S3-compatible stores, as s3torchconnector's DCP module.
// Importing it registers the s3:// storage backend (./register.ts) with @dcpjs/core. The pieces a
// custom reader or backend is built from (ranged GETs, the readers, error mapping, socket guards)
// are "@dcpjs/s3/extend".
import "./register.js";

export {
  type ChecksumMode,
  createS3Client,
  DEFAULT_MAX_ATTEMPTS,
  DEFAULT_MAX_CONCURRENCY,
  DEFAULT_PART_SIZE_BYTES,
  DEFAULT_QUEUE_SIZE,
  MAX_MAX_ATTEMPTS,
  MAX_PART_SIZE_BYTES,
  MIN_PART_SIZE_BYTES,
  type S3ClientConfig,
} from "./client-config.js";
export { type AbortIncompleteUploadsOptions, abortIncompleteUploads } from "./multipart-cleanup.js";
export {
  BinaryPrefixStrategy,
  DefaultPrefixStrategy,
  HexPrefixStrategy,
  NumericPrefixStrategy,
  type NumericPrefixStrategyOptions,
  RoundRobinPrefixStrategy,
  type RoundRobinPrefixStrategyOptions,
  type S3PrefixStrategy,
} from "./prefix-strategy.js";
export {
  CACHE_LOCK_STALE_MS,
  DEFAULT_CACHE_BLOCK_BYTES,
  DEFAULT_CACHE_MAX_BYTES,
  S3ReadCache,
  type S3ReadCacheOptions,
  type S3ReadCacheStats,
} from "./read-cache.js";
export { DEFAULT_MAX_GAP_SIZE, DEFAULT_PARALLEL_THRESHOLD } from "./readers/dcp-optimized-reader.js";
export { DEFAULT_RANGE_BUFFER_BYTES } from "./readers/range-based-reader.js";
export {
  type DcpOptimizedOptions,
  type RangeBasedOptions,
  type ReaderConstructor,
  type ReaderType,
  S3ReaderConstructor,
} from "./readers/reader-constructor.js";
export { S3FileSystem, type S3FileSystemOptions } from "./s3-file-system.js";
export { S3StorageReader, type S3StorageReaderOptions } from "./s3-storage-reader.js";
export { S3StorageWriter, type S3StorageWriterOptions } from "./s3-storage-writer.js";
export { isS3Uri, parseS3Uri, type S3Location } from "./s3-uri.js";
export {
  AimdLimiter,
  type AimdLimiterOptions,
  type AimdOutcome,
  type AimdSlot,
  DEFAULT_THROTTLE_BASE_DELAY_MS,
  DEFAULT_THROTTLE_MAX_DELAY_MS,
  DEFAULT_THROTTLE_TIMEOUT_MS,
  THROTTLE_MAX_PREFIXES,
  ThrottledError,
  type ThrottleOptions,
  type ThrottleState,
  throttleS3Client,
  throttleState,
} from "./throttle.js";
