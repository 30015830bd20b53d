// A Web Worker of platform/browser-worker-pool.ts: runs each task it is sent (`runBrowserTask`)
// and answers `{ id, result }` or `{ id, error }`. Started as a module worker from
// `new URL("./browser-offload-worker.js", import.meta.url)`: a bundle must place this file's bundle
// beside the code that starts it under this name (scripts/browser-bundle.mjs does; Vite and
// webpack 5 do by themselves).

/**
 * The task runner, imported once the listener is in place: its modules wait for hash-wasm's
 * compilation (a top-level `await`), and a message that came meanwhile to a worker with no
 * listener yet would be lost.
 */
const tasks = import("./browser-offload-task.js");

/** This worker's global scope, as far as it is used here (the package is typed without the DOM). */
const scope =
  /** @type {{ addEventListener(type: "message", listener: (event: { data: { id: number, task: import("./browser-offload-task.js").BrowserTask } }) => void): void, postMessage(message: unknown): void }} */ (
    /** @type {unknown} */ (globalThis)
  );

scope.addEventListener("message", async ({ data: { id, task } }) => {
  let result;
  try {
    result = await (await tasks).runBrowserTask(task);
  } catch (error) {
    try {
      scope.postMessage({ id, error });
    } catch {
      // An error that does not clone: its text.
      scope.postMessage({ id, error: String(error) });
    }
    return;
  }
  scope.postMessage({ id, result });
});
