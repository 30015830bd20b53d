// @dcpjs/core — what a training program calls: save, load, asyncSave, tensors and their sharding,
// process groups, the errors, the local folder storage, and DCP's default planners. The
// extension API (planner and storage contracts, the storage registry, item formats, the DCP data
// model, the checkpoint layout) is "@dcpjs/core/extend"; everything else is internal.

export { LocalFileSystem } from "#platform";
export { type AsyncSaveOptions, type AsyncSaveResult, asyncSave } from "./async-save.js";
export {
  type CheckpointListing,
  DEFAULT_LIST_DEPTH,
  type ListCheckpointsOptions,
  latestCheckpoint,
  listCheckpoints,
} from "./checkpoints.js";
export {
  type ConvertBatch,
  type ConvertFormat,
  type ConvertOptions,
  type ConvertSummary,
  convertCheckpoint,
  DEFAULT_CONVERT_WINDOW_BYTES,
} from "./convert.js";
export {
  createLocalProcessGroups,
  createSingleProcessGroup,
  type ProcessGroup,
} from "./distributed/process-group.js";
export {
  CheckpointError,
  type CheckpointErrorCode,
  CheckpointException,
  ChecksumMismatchError,
  MetadataError,
  NotFoundError,
  type RankFailure,
} from "./errors.js";
export {
  DEFAULT_MAX_SHARD_SIZE,
  type ExportSafetensorsOptions,
  type ExportSummary,
  exportSafetensors,
} from "./export-safetensors.js";
export {
  LOAD_SUPERSEDED_RETRIES,
  type Loaded,
  type LoadOptions,
  type LoadStateDictFromKeysOptions,
  load,
  loadStateDictFromKeys,
} from "./load.js";
export { DTYPE_BYTES, DTYPES, type DType, isDType } from "./model/dtype.js";
export { type ChunkRange, chunkRange, type ShardTensorOptions, shardTensor } from "./model/sharding.js";
export type { StateDict, StateDictEntry, StateDictLeaf, StateDictValue } from "./model/state-dict.js";
export {
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
} from "./model/tensor.js";
export { DefaultLoadPlanner, type DefaultLoadPlannerOptions } from "./plan/load-planner.js";
export type { Metadata } from "./plan/metadata.js";
export { DefaultSavePlanner, type DefaultSavePlannerOptions } from "./plan/save-planner.js";
export { type SaveOptions, save } from "./save.js";
export { FileSystemReader, type FileSystemReaderOptions } from "./storage/filesystem-reader.js";
export { FileSystemWriter, type FileSystemWriterOptions } from "./storage/filesystem-writer.js";
export type { ProgressCallback } from "./storage/progress.js";
export {
  QuantizedHuggingFaceStorageReader,
  type QuantizedHuggingFaceStorageReaderOptions,
  WEIGHT_SCALE_INV_SUFFIX,
} from "./storage/quantized-hf-reader.js";
export { createStorageReader, createStorageWriter, type StorageRouterOptions } from "./storage/registry.js";
