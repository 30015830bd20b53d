// @dcpjs/core/extend — the extension API: what a storage backend, an item format, a planner or a
// process group is written against. A training program needs only "@dcpjs/core".

export { isDamagedMetadataError } from "./checkpoints.js";
export { allGather, allReduce, reduceScatter } from "./distributed/collectives.js";
export { assertRoot, assertScatterValues } from "./distributed/process-group.js";
export { throwIfAborted, toRankFailure } from "./errors.js";
export { EXPORT_BATCH_BYTES, VALUES_METADATA_KEY } from "./export-safetensors.js";
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
export {
  checkpointFormatNamed,
  checkpointFormats,
  registerCheckpointFormat,
} from "./formats/checkpoint-formats.js";
export { decodeCheckpointMetadata, mergeRankMetadata } from "./formats/checkpoint-metadata.js";
export {
  assertRunningChecksums,
  blockChecksumFields,
  CHECKSUM_ALGORITHMS,
  CHECKSUM_BLOCK_BYTES,
  type ChecksumAlgorithm,
  type ChecksumBlocks,
  checksumFields,
  checksumName,
  computeChecksum,
  ITEM_CHECKSUM_ALGORITHM,
  type ItemChecksum,
  itemChecksum,
  runningBefore,
  runningChecksums,
} from "./formats/checksum.js";
export type { FramedItem, ItemExpectation, ItemFormat } from "./formats/item-format.js";
export { itemFormatNamed, itemFormatOf, registerItemFormat } from "./formats/item-formats.js";
export {
  assertSafeRelativePath,
  decodeMetadata,
  encodeMetadata,
  METADATA_FORMAT,
  METADATA_FORMAT_VERSION,
} from "./formats/metadata-codec.js";
export { NATIVE_ITEM_FORMAT } from "./formats/native-item-format.js";
export {
  DTYPE_TO_SAFETENSORS,
  MAX_SAFETENSORS_HEADER_BYTES,
  parseSafetensorsHeader,
  SAFETENSORS_DTYPES,
  SAFETENSORS_VALUES_PER_ELEMENT,
  type SafetensorsEntry,
  type SafetensorsHeader,
  toSafetensors,
} from "./formats/safetensors/header.js";
export { TORCH_ITEM_FORMAT } from "./formats/torch/torch-item-format.js";
export { type MetadataLimits, validateMetadata } from "./formats/validate-metadata.js";
export { boxCast, castBox, castRefusal, type ElementBox } from "./model/cast.js";
export { type DecodeLimit, DecodeLimitError } from "./model/decode-budget.js";
export { allocateTypedArray, assertDType, type TypedArrayFor } from "./model/dtype.js";
export {
  type Box,
  type BoxIntersection,
  boxCopy,
  boxesOverlap,
  boxIntersection,
  contiguousRun,
  copyBox,
  findChunk,
  type OffsetKey,
  offsetKey,
  sameShape,
} from "./model/geometry.js";
export {
  type FlatStateDict,
  type FlattenOptions,
  flattenStateDict,
  getElement,
  type ObjectPath,
  setElement,
  unflattenStateDict,
} from "./model/state-dict.js";
export { type StridedCopy, stridedCopy } from "./model/strided-copy.js";
export { validateTensor } from "./model/tensor.js";
export { assertStateDictValue, decodeValue, encodeValue } from "./model/value-codec.js";
export {
  createReadItems,
  createReadItemsForChunkList,
  DefaultLoadPlanner,
  type DefaultLoadPlannerOptions,
  EmptyStateDictLoadPlanner,
} from "./plan/load-planner.js";
export {
  type BytesReadItem,
  type BytesStorageMetadata,
  type BytesWriteItem,
  type ChunkStorageMetadata,
  type LoadItemType,
  type LoadPlan,
  type MetadataIndex,
  metadataIndexEquals,
  metadataIndexKey,
  type ReadItem,
  type SavePlan,
  type StorageInfo,
  type StorageMeta,
  type StorageMetadataEntry,
  type StoragePrefix,
  type TensorProperties,
  type TensorReadItem,
  type TensorStorageMetadata,
  type TensorWriteData,
  type TensorWriteItem,
  type WriteItem,
  type WriteItemType,
  type WriteResult,
} from "./plan/metadata.js";
export type { LoadPlanner, SavePlanner } from "./plan/planner.js";
export {
  chunksOverlap,
  createGlobalSavePlan,
  createWriteItems,
  DCP_VERSION,
  DefaultSavePlanner,
  type DefaultSavePlannerOptions,
  dedupSavePlans,
  tensorStorageSize,
  validateGlobalPlan,
} from "./plan/save-planner.js";
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
export { splitBySizeAndType } from "./storage/filesystem-writer.js";
export {
  DATA_FILE_SUFFIX,
  dataFileName,
  isDataFile,
  isMetadataTmpFile,
  isSaveLeaseFile,
  METADATA_FILE,
  metadataTmpFile,
  rankFilePrefix,
  rankMetadataFile,
  SAVE_LEASE_EXPIRY_MS,
  SAVE_LEASE_RENEW_MS,
  saveLeaseFile,
  saveTagOf,
} from "./storage/layout.js";
export { prefetchInOrder } from "./storage/ordered-prefetch.js";
export {
  type ByteRange,
  DEFAULT_READ_CAPABILITIES,
  type FileReadSchedule,
  type ItemLocation,
  type ReadCapabilities,
  type ReadRun,
  resolveReadCapabilities,
  type ScheduledChunk,
  scheduleReads,
  splitIntoPieces,
} from "./storage/read-schedule.js";
export { readViaReadInto } from "./storage/read-via-read-into.js";
export { readWholeFile } from "./storage/read-whole-file.js";
export {
  registerStorageBackend,
  type StorageBackend,
  storageBackendFor,
  unregisterStorageBackend,
} from "./storage/registry.js";
export {
  DCP_SHARDING_INFO_KEY,
  readSafetensorsMetadata,
  SAFETENSORS_CHECKSUMS_FILE,
  SAFETENSORS_INDEX_FILE,
} from "./storage/safetensors-folder.js";
export {
  PROCESS_ID,
  planSharedReads,
  type ReadPlanData,
  SHARED_READ_BYTES,
  SharedChunkReads,
  type SharedFetch,
  sharedReadBytesHeld,
} from "./storage/shared-chunk-reads.js";
export {
  keepStaging,
  releaseStaging,
  STAGING_KEEP_BYTES,
  STAGING_KEEP_MS,
  stagingBytesKept,
  takeStaging,
} from "./storage/staging-buffers.js";
export type { StorageReader, StorageSetUp, StorageWriter } from "./storage/storage.js";
export {
  castOnWorker,
  checksumOnWorker,
  collectWorkerHeaps,
  copyOnWorker,
  runningChecksumsOnWorker,
  runsOffThread,
  WORKER_COLLECT_MS,
  WORKER_MIN_BYTES,
  workerTasksRun,
  workerThreadsRunning,
} from "./storage/worker-pool.js";
export { type WriteWholeFileOptions, writeWholeFile } from "./storage/write-whole-file.js";
export { assertIntegerInRange, assertReadRange } from "./validate.js";
