export { type AsyncSaveOptions, type AsyncSaveResult, asyncSave } from "./async-save.js";
export { decodeCheckpointMetadata } from "./checkpoint-metadata.js";
export { allGather, allReduce, reduceScatter } from "./collectives.js";
export {
  allocateTypedArray,
  assertDType,
  DTYPE_BYTES,
  DTYPES,
  type DType,
  isDType,
  type TypedArrayFor,
} from "./dtype.js";
export {
  CheckpointError,
  type CheckpointErrorCode,
  CheckpointException,
  ChecksumMismatchError,
  MetadataError,
  NotFoundError,
  type RankFailure,
  throwIfAborted,
  toRankFailure,
} from "./errors.js";
export type {
  CreateStreamOptions,
  FileEntry,
  FileReadStream,
  FileSystemBase,
  FileWriteStream,
  RenameOptions,
  StreamMode,
} from "./filesystem-base.js";
export { FileSystemReader, type FileSystemReaderOptions } from "./filesystem-reader.js";
export {
  DATA_FILE_SUFFIX,
  FileSystemWriter,
  type FileSystemWriterOptions,
  METADATA_FILE,
  metadataTmpFile,
  splitBySizeAndType,
} from "./filesystem-writer.js";
export { type LoadOptions, type LoadStateDictFromKeysOptions, load, loadStateDictFromKeys } from "./load.js";
export {
  createReadItems,
  createReadItemsForChunkList,
  DefaultLoadPlanner,
  type DefaultLoadPlannerOptions,
  EmptyStateDictLoadPlanner,
} from "./load-planner.js";
export { LocalFileSystem } from "./local-file-system.js";
export {
  type BytesStorageMetadata,
  type ChunkStorageMetadata,
  type LoadItemType,
  type LoadPlan,
  type Metadata,
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
  type TensorStorageMetadata,
  type TensorWriteData,
  type WriteItem,
  type WriteItemType,
  type WriteResult,
} from "./metadata.js";
export {
  assertSafeRelativePath,
  decodeMetadata,
  encodeMetadata,
  METADATA_FORMAT,
  METADATA_FORMAT_VERSION,
} from "./metadata-codec.js";
export type { LoadPlanner, SavePlanner } from "./planner.js";
export {
  assertRoot,
  assertScatterValues,
  createLocalProcessGroups,
  createSingleProcessGroup,
  type ProcessGroup,
} from "./process-group.js";
export type { ProgressCallback } from "./progress.js";
export { readWholeFile } from "./read-whole-file.js";
export {
  DEFAULT_MAX_SHARD_SIZE,
  EXPORT_BATCH_BYTES,
  type ExportSafetensorsOptions,
  type ExportSummary,
  exportSafetensors,
  VALUES_METADATA_KEY,
} from "./safetensors/export.js";
export {
  DTYPE_TO_SAFETENSORS,
  MAX_SAFETENSORS_HEADER_BYTES,
  parseSafetensorsHeader,
  SAFETENSORS_DTYPES,
  type SafetensorsEntry,
  type SafetensorsHeader,
} from "./safetensors/header.js";
export {
  DCP_SHARDING_INFO_KEY,
  readSafetensorsMetadata,
  SAFETENSORS_CHECKSUMS_FILE,
  SAFETENSORS_INDEX_FILE,
} from "./safetensors/read-metadata.js";
export { type SaveOptions, save } from "./save.js";
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
} from "./save-planner.js";
export { type ChunkRange, chunkRange, type ShardTensorOptions, shardTensor } from "./sharding.js";
export {
  type FlatStateDict,
  flattenStateDict,
  getElement,
  type ObjectPath,
  type StateDict,
  type StateDictLeaf,
  setElement,
  unflattenStateDict,
} from "./state-dict.js";
export type { StorageReader, StorageSetUp, StorageWriter } from "./storage.js";
export { createStorageReader, createStorageWriter, type StorageRouterOptions } from "./storage-router.js";
export {
  copyBox,
  emptyTensor,
  isShardedTensor,
  isTensor,
  numel,
  type Shard,
  type ShardedTensor,
  sliceTensor,
  type Tensor,
  tensor,
  tensorBytes,
  validateTensor,
} from "./tensor.js";
export { assertIntegerInRange, assertReadRange } from "./validate.js";
export { decodeValue, encodeValue } from "./value-codec.js";
