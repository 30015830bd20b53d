// @dcpjs/core/testing — internals the test suite and the benchmarks reach for: the process-global
// counters and pools a test watches (worker threads, staging buffers, shared reads), the read
// scheduler, the save planner's steps, the codecs. Not published: the build leaves it out of
// dist (tsconfig.json), and package.json exports this subpath under the "@dcpjs/source" condition
// only, which vitest, `tsc -p test` and `pnpm bench` set. Nothing here is a promise. One
// `export … from` per module, in module order.

export { saveThreadsStarted } from "./background/save-thread.js";
export { CHECKSUM_BLOCK_BYTES, computeChecksum, runningChecksums } from "./formats/checksum.js";
export { decodeMetadata, encodeMetadata } from "./formats/metadata-codec.js";
export { parseSafetensorsHeader, SAFETENSORS_DTYPES } from "./formats/safetensors/header.js";
export { encodeTorchMetadata } from "./formats/torch/torch-write.js";
export { boxesOverlap, boxIntersection, copyBox } from "./model/geometry.js";
export { getElement, type ObjectPath, setElement } from "./model/state-dict.js";
export {
  createColumnarGlobalPlan,
  dedupSavePlanColumns,
  validateColumnarGlobalPlan,
} from "./plan/columnar-global-plan.js";
export { createReadItemsForChunkList } from "./plan/load-planner.js";
export { metadataIndexEquals, type TensorReadItem } from "./plan/metadata.js";
export {
  coordinatePlans,
  forgetRankPlan,
  localPlanMessage,
  type PlanMessage,
  planReply,
} from "./plan/plan-exchange.js";
export {
  createGlobalSavePlan,
  createWriteItems,
  dedupSavePlans,
  validateGlobalPlan,
} from "./plan/save-planner.js";
export { stageStateDict } from "./staging.js";
export { STAGING_POOL_IDLE_MS, stagingPoolFor } from "./staging-pool.js";
export { splitBySizeAndType } from "./storage/filesystem-writer.js";
export { isSaveLeaseFile, saveLeaseFile, saveTagOf } from "./storage/layout.js";
export { readCheckpointMetadata } from "./storage/read-checkpoint-metadata.js";
export {
  DEFAULT_READ_CAPABILITIES,
  type ItemLocation,
  resolveReadCapabilities,
  scheduleReads,
  splitIntoPieces,
} from "./storage/read-schedule.js";
export { storageBackendFor } from "./storage/registry.js";
export { SAFETENSORS_INDEX_FILE } from "./storage/safetensors-folder.js";
export { sharedReadBytesHeld } from "./storage/shared-chunk-reads.js";
export {
  keepStaging,
  releaseStaging,
  STAGING_KEEP_BYTES,
  STAGING_KEEP_MS,
  stagingBytesKept,
  takeStaging,
} from "./storage/staging-buffers.js";
export {
  castOnWorker,
  checksumOnWorker,
  collectWorkerHeaps,
  copyOnWorker,
  runningChecksumsOnWorker,
  WORKER_COLLECT_MS,
  WORKER_MIN_BYTES,
  workerTasksRun,
  workerThreadsRunning,
} from "./storage/worker-pool.js";
export { writeWholeFile } from "./storage/write-whole-file.js";
