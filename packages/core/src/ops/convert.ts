// `dcp convert` (and its alias `dcp export`): the conversion lives in convert.ts, beside `save`
// and `load`, as DCP's format utilities do; it works on any registered backend.
export {
  type ConvertBatch,
  type ConvertFormat,
  type ConvertOptions,
  type ConvertSummary,
  convertCheckpoint,
  DEFAULT_CONVERT_WINDOW_BYTES,
} from "../convert.js";
