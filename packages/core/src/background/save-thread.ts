// The calling side of the save thread (Node only): one `worker_threads` Worker per process,
// started on the first background save, reused by every later one, and not keeping the process
// alive while no save runs on it.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import { CheckpointError } from "../errors.js";
import type { StateDict } from "../model/state-dict.js";
import type { Metadata } from "../plan/metadata.js";
import { countWorkerTasksRun } from "../storage/worker-pool.js";
import { decodeError, encodeReason } from "./error-codec.js";
import type { FromSaveThread, SaveThreadPlan, ToSaveThread } from "./save-messages.js";

interface Pending {
  resolve(metadata: Metadata): void;
  reject(error: unknown): void;
}

/** Where tsx's package manifest says its ESM API is. */
interface TsxManifest {
  readonly exports: { readonly "./esm/api": { readonly import: { readonly default: string } } };
}

let worker: Worker | undefined;
let started = 0;
let nextId = 0;
const pending = new Map<number, Pending>();

/**
 * Starts the save thread. From dcpjs's TypeScript sources (tests, the demo), the thread first
 * registers tsx's loader (Node 20 gives a worker no loader of the process's) and resolves with
 * the `@dcpjs/source` condition, so it loads the same modules (the same backend registry) as the
 * sources do; from `dist`, it starts the compiled entry with this process's flags.
 */
function startThread(): Worker {
  // This process's flags, less those about its own entry (`-e` code's `--input-type`).
  const execArgv = process.execArgv.filter(
    (f, i, all) => !/^--input-type(=|$)/.test(f) && all[i - 1] !== "--input-type",
  );
  if (!import.meta.url.endsWith(".ts")) {
    return new Worker(new URL("./save-worker.js", import.meta.url), { execArgv });
  }
  const entry = new URL("./save-worker.ts", import.meta.url).href;
  const manifest = createRequire(import.meta.url).resolve("tsx/package.json");
  const { exports } = JSON.parse(readFileSync(manifest, "utf8")) as TsxManifest;
  const tsx = new URL(exports["./esm/api"].import.default, pathToFileURL(manifest)).href;
  const flags = execArgv.some((f) => f.includes("@dcpjs/source"))
    ? execArgv
    : [...execArgv, "--conditions=@dcpjs/source"];
  const boot = `import(${JSON.stringify(tsx)}).then((api) => { api.register(); return import(${JSON.stringify(entry)}); });`;
  return new Worker(boot, { eval: true, execArgv: flags });
}

function settle(id: number): Pending | undefined {
  const p = pending.get(id);
  pending.delete(id);
  if (pending.size === 0) worker?.unref();
  return p;
}

/** Rejects every save in flight and forgets the thread (the next save starts a new one). */
function lose(thread: Worker, error: unknown): void {
  if (worker !== thread) return;
  worker = undefined;
  const all = [...pending.values()];
  pending.clear();
  for (const p of all) p.reject(error);
}

/** The process's save thread, started when first needed. */
function saveThread(): Worker {
  if (worker) return worker;
  const thread = startThread();
  started++;
  thread.unref();
  thread.on("message", (m: FromSaveThread) => {
    countWorkerTasksRun(m.workerTasks);
    const p = settle(m.id);
    if (m.type === "done") p?.resolve(m.metadata);
    else p?.reject(decodeError(m.error));
  });
  thread.on("error", (error) =>
    lose(
      thread,
      new CheckpointError("IO_ERROR", `The save thread failed: ${error.message}`, { cause: error }),
    ),
  );
  thread.on("exit", (code) =>
    lose(
      thread,
      new CheckpointError(
        "IO_ERROR",
        `Expected the save thread to keep running, it exited with code ${code}`,
      ),
    ),
  );
  worker = thread;
  return thread;
}

/**
 * Runs a save on the save thread: hands it the staged state dict (its tensors' shared memory is
 * shared, not copied; its values are cloned) and resolves with the committed metadata, or rejects
 * with the error the save threw there, rebuilt here. The thread keeps the process alive only
 * while a save runs on it; a save's failure leaves it running for the next.
 *
 * @param stateDict - the staged state dict.
 * @param plan - see {@link SaveThreadPlan}.
 * @param signal - aborts the save there (its reason is passed on).
 * @returns the committed metadata; `undefined` when the state dict cannot be handed over (a
 * value that cannot be cloned): the caller then saves on its own thread.
 */
export function saveOnSaveThread(
  stateDict: StateDict,
  plan: SaveThreadPlan,
  signal: AbortSignal | undefined,
): Promise<Metadata> | undefined {
  const thread = saveThread();
  const id = nextId++;
  const message: ToSaveThread = { type: "save", id, stateDict, plan };
  try {
    thread.postMessage(message);
  } catch {
    return undefined;
  }
  if (pending.size === 0) thread.ref();
  const done = new Promise<Metadata>((resolve, reject) => pending.set(id, { resolve, reject }));
  if (!signal) return done;
  const onAbort = () =>
    thread.postMessage({ type: "abort", id, reason: encodeReason(signal.reason) } satisfies ToSaveThread);
  if (signal.aborted) onAbort();
  else signal.addEventListener("abort", onAbort, { once: true });
  return done.finally(() => signal.removeEventListener("abort", onAbort));
}

/** Save threads this process has started so far (one, unless one was lost): for tests. */
export function saveThreadsStarted(): number {
  return started;
}
