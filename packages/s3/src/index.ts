// Importing @dcpjs/s3 registers the s3:// storage backend (./register.ts) with @dcpjs/core.
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
  resolveTransferSettings,
  type S3ClientConfig,
  type S3TransferSettings,
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
  type CheckedBody,
  getChecked,
  getRange,
  getRangeInto,
  headObject,
  headSize,
  type S3ObjectRef,
} from "./ranged-get.js";
export {
  CACHE_LOCK_STALE_MS,
  type CachedObjectId,
  DEFAULT_CACHE_BLOCK_BYTES,
  DEFAULT_CACHE_MAX_BYTES,
  S3ReadCache,
  type S3ReadCacheOptions,
  type S3ReadCacheStats,
} from "./read-cache.js";
export { BLOCKS_IN_FLIGHT, CachedS3Reader } from "./readers/cached-reader.js";
export {
  coalesceRanges,
  DCPOptimizedS3Reader,
  DEFAULT_MAX_GAP_SIZE,
  DEFAULT_PARALLEL_THRESHOLD,
  type ItemRange,
  RANGE_GET_BYTES,
  type RangeGroup,
} from "./readers/dcp-optimized-reader.js";
export { DEFAULT_RANGE_BUFFER_BYTES, RangeBasedS3Reader } from "./readers/range-based-reader.js";
export {
  type DcpOptimizedOptions,
  type RangeBasedOptions,
  type ReaderConstructor,
  type ReaderTarget,
  type ReaderType,
  S3ReaderConstructor,
} from "./readers/reader-constructor.js";
export { SequentialS3Reader } from "./readers/sequential-reader.js";
export { s3StorageBackend } from "./register.js";
export { isNotFound, s3ErrorInfo, toCheckpointError } from "./s3-errors.js";
export { RENAME_DELETE_ATTEMPTS, S3FileSystem, type S3FileSystemOptions } from "./s3-file-system.js";
export { S3StorageReader, type S3StorageReaderOptions } from "./s3-storage-reader.js";
export { S3StorageWriter, type S3StorageWriterOptions } from "./s3-storage-writer.js";
export { escapePath, isS3Uri, joinS3Path, parseS3Uri, type S3Location } from "./s3-uri.js";
export { S3WriteStream } from "./s3-write-stream.js";
