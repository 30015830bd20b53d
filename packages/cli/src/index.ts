// The s3:// storage backend registers itself on import: every operation takes folders and s3:// URIs.
import "@dcpjs/s3";

export { type DemoOptions, type DemoSummary, runDemo } from "./demo/run-demo.js";
export {
  humanModelsDir,
  type QuantizationRecord,
  readTfjsModelsIn,
  readTfjsModelWeights,
  type TfjsModelWeights,
} from "./demo/tfjs-weights.js";
export {
  buildTrainingState,
  columnSharded,
  emptyRankView,
  type Placement,
  rankView,
  rowSharded,
  SHARD_THRESHOLD_BYTES,
  tensorByteLength,
} from "./demo/training-state.js";
export { type Comparison, compareStateDicts } from "./demo/verify.js";
export { freePort } from "./free-port.js";
export {
  describeCheckpoint,
  formatInspectTable,
  type InspectEntry,
  type InspectReport,
  inspectCheckpoint,
} from "./inspect.js";
export {
  type CheckpointListing,
  COPY_PIECE_BYTES,
  type CopyOptions,
  type CopyReport,
  collectGarbage,
  copyCheckpoint,
  type GarbageOptions,
  listCheckpoints,
  type RemovalReport,
  removeCheckpoint,
} from "./ops/checkpoint-ops.js";
export { positiveInt } from "./options.js";
export { VERIFY_BATCH_BYTES, type VerifyOptions, type VerifyReport, verifyCheckpoint } from "./verify.js";
