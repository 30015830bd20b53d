// The work a Web Worker of platform/browser-worker-pool.ts does — the one offload task function
// Node's worker threads run too (storage/offload-task.js); browsers collect garbage by themselves.
export { runOffloadTask as runBrowserTask } from "../storage/offload-task.js";

/** @typedef {import("../storage/offload-task.js").Task} BrowserTask */
