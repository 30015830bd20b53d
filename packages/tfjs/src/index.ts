// @dcpjs/tfjs: dcpjs for TensorFlow.js training. Importing it registers the dcp:// and s3://
// routers of model.save / tf.loadLayersModel.
import { registerDcpjsRouters } from "./io-handler.js";

export {
  DCPJS_SCHEMES,
  type DcpjsIOHandlerOptions,
  dcpjsIOHandler,
  registerDcpjsRouters,
  TFJS_ARTIFACTS_FORMAT,
} from "./io-handler.js";
export { type CastTensor, fromTf, type TfDType, type ToTfOptions, toTf } from "./tensors.js";
export {
  type LoadTrainingStateOptions,
  loadTrainingState,
  type RestoredState,
  type RestoreStateDictOptions,
  restoreStateDict,
  type ToStateDictOptions,
  toStateDict,
} from "./training-state.js";

registerDcpjsRouters();
