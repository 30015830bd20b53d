// @dcpjs/demo (private): the demos behind `pnpm start` (the `dcp-demo` command), as functions.
export { type DemoOptions, type DemoSummary, runDemo } from "./demo/run-demo.js";
export { runTrainDemo, type TrainDemoOptions, type TrainDemoSummary } from "./train/run-train-demo.js";
