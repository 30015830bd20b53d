// @dcpjs/core/extend — the extension API: what a storage backend, an item format, a planner or a
// process group is written against, and the pieces the other dcpjs packages share. A training
// program needs only "@dcpjs/core". One `export … from` per module, in module order.

export { ReadCache } from "#platform";
export { assertRoot, assertScatterValues, type WorkerGroupDescription } from "./distributed/process-group.js";
export { throwIfAborted } from "./errors.js";
export type {
  CheckpointFile,
  CheckpointFolder,
  CheckpointFormat,
  CheckpointOutput,
  CheckpointSource,
  CheckpointWriteBatch,
  CheckpointWriteOptions,
  CheckpointWriteSummary,
} from "./formats/checkpoint-format.js";
export { checkpointFormats, registerCheckpointFormat } from "./formats/checkpoint-formats.js";
export { decodeCheckpointMetadata } from "./formats/checkpoint-metadata.js";
export type { ChecksumAlgorithm, ItemChecksum } from "./formats/checksum.js";
export type { FramedItem, ItemExpectation, ItemFormat } from "./formats/item-format.js";
export { registerItemFormat } from "./formats/item-formats.js";
export { type MetadataLimits, validateMetadata } from "./formats/validate-metadata.js";
export { boxCast, castBox, castRefusal, type ElementBox } from "./model/cast.js";
export { type DecodeLimit, DecodeLimitError } from "./model/decode-budget.js";
export {
  type FlatStateDict,
  type FlattenOptions,
  flattenStateDict,
  unflattenStateDict,
} from "./model/state-dict.js";
export {
  type BytesStorageMetadata,
  type ChunkStorageMetadata,
  type LoadPlan,
  type MetadataIndex,
  metadataIndexKey,
  type ReadItem,
  type SavePlan,
  type StorageInfo,
  type StorageMeta,
  type TensorStorageMetadata,
  type WriteItem,
  type WriteResult,
} from "./plan/metadata.js";
export { MetadataBuilder, type MetadataBuilderOptions, withWriteResults } from "./plan/metadata-builder.js";
export {
  columnarMetadata,
  type MetadataColumns,
  metadataColumns,
  plainMetadata,
  type StorageColumns,
  VALUE_DTYPE,
} from "./plan/metadata-columns.js";
export type { LoadPlanner, SavePlanner } from "./plan/planner.js";
export { decodeSavePlan, encodeSavePlan, SavePlanDecoder } from "./plan/save-plan-codec.js";
export { columnarSavePlan, type SavePlanColumns, savePlanColumns } from "./plan/save-plan-columns.js";
export { decodeWriteResults, encodeWriteResults } from "./plan/write-result-codec.js";
export {
  type WriteResultColumns,
  WriteResultColumnsBuilder,
  writeResultColumns,
  writeResultsView,
} from "./plan/write-result-columns.js";
export { type RetryOptions, type RetryPolicy, retry } from "./retry.js";
export type {
  CreateStreamOptions,
  FileEntry,
  FileReadStream,
  FileSystemBase,
  FileWriteStream,
  RenameOptions,
  StreamMode,
} from "./storage/filesystem-base.js";
export {
  type IncrementalBase,
  MAX_REFERENCED_CHECKPOINTS,
  type UnchangedItems,
} from "./storage/incremental-base.js";
export { METADATA_FILE, rankFilePrefix, SAVE_LEASE_EXPIRY_MS } from "./storage/layout.js";
export { prefetchInOrder } from "./storage/ordered-prefetch.js";
export type { CachedFileVersion, ReadCacheOptions, ReadCacheStats } from "./storage/read-cache.js";
export {
  CACHE_LOCK_STALE_MS,
  DEFAULT_CACHE_BLOCK_BYTES,
  DEFAULT_CACHE_MAX_BYTES,
} from "./storage/read-cache-defaults.js";
export { BLOCKS_IN_FLIGHT, type CachedReadSource, CachedReadStream } from "./storage/read-cache-stream.js";
export type { ByteRange, CoalesceRule, ReadCapabilities } from "./storage/read-schedule.js";
export { readViaReadInto } from "./storage/read-via-read-into.js";
export type { BaseLease } from "./storage/references.js";
export {
  type BackendFileSystemOptions,
  type CleanupUploadsOptions,
  type RegisterStorageBackendOptions,
  registerStorageBackend,
  type StorageBackend,
  type StorageReaderRouterOptions,
  type StorageWriterRouterOptions,
  unregisterStorageBackend,
} from "./storage/registry.js";
export type { StorageReader, StorageSetUp, StorageWriter } from "./storage/storage.js";
export { assertIntegerInRange, assertReadRange } from "./validate.js";
