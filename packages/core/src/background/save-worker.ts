// The save thread's entry (Node only): runs the saves `asyncSave` hands over after `staged`, on
// this thread's own event loop, so that a busy calling thread cannot stall them.
import { availableParallelism } from "node:os";
import { parentPort } from "node:worker_threads";
import {
  type ProcessGroup,
  rebuildLocalProcessGroup,
  type WorkerGroupDescription,
} from "../distributed/process-group.js";
import { plainMetadata } from "../plan/metadata-columns.js";
import { DefaultSavePlanner } from "../plan/save-planner.js";
import { save } from "../save.js";
import { garbageCollector } from "../storage/offload-worker.js";
import { limitWorkerThreads, workerTasksRun } from "../storage/worker-pool.js";
import { decodeError, decodeReason, type EncodedError, encodeError } from "./error-codec.js";
import type { SaveOutcome, ToSaveThread } from "./save-messages.js";

// The saves here run while the calling thread trains: their checksums and hashes take at most one
// core fewer than the machine has (one on two cores), so training keeps a core of its own.
limitWorkerThreads(availableParallelism() - 1);

/**
 * This thread's collector. Once no save runs here, the thread collects its whole heap: a save
 * leaves a few MiB of garbage (plans, metadata, promises), which V8 let pile up over the first
 * saves and gave back only much later — the process's RSS after 10 saves of 256 MiB lay about
 * 25 MiB above that after 60 (docs/benchmarks.md). A collection here costs this thread, not the
 * training thread.
 */
const collectGarbage = garbageCollector();

const imported = new Map<string, Promise<unknown>>();
const groups = new Map<string, Promise<ProcessGroup>>();
const running = new Map<number, AbortController>();

/** Imports a module once (a backend's registration, a group's factory); a failed import is tried again next time. */
function importOnce(url: string): Promise<unknown> {
  let p = imported.get(url);
  if (!p) {
    p = import(url);
    imported.set(url, p);
    p.catch(() => imported.delete(url));
  }
  return p;
}

/** The rank's group on this thread, rebuilt once per description and kept for later saves. */
async function groupOf(description: WorkerGroupDescription | undefined): Promise<ProcessGroup | undefined> {
  if (!description) return undefined;
  if (description.kind === "local") return rebuildLocalProcessGroup(description);
  let pg = groups.get(description.key);
  if (!pg) {
    const { module, factory, options } = description;
    pg = importOnce(module).then((m) => {
      const make = (m as Record<string, unknown>)[factory];
      if (typeof make !== "function")
        throw new TypeError(`Expected ${module} to export a function ${factory}, got ${typeof make}`);
      return make(options) as Promise<ProcessGroup>;
    });
    groups.set(description.key, pg);
    pg.catch(() => groups.delete(description.key));
  }
  return pg;
}

/** A planner that throws the plan step's error the calling thread found (see `SaveThreadPlan.planError`). */
class RefusingPlanner extends DefaultSavePlanner {
  constructor(private readonly error: EncodedError) {
    super();
  }
  override setUpPlanner(): void {
    throw decodeError(this.error);
  }
}

async function run({ id, stateDict, plan }: Extract<ToSaveThread, { type: "save" }>): Promise<void> {
  const controller = new AbortController();
  running.set(id, controller);
  try {
    if (plan.backendModule !== "local") await importOnce(plan.backendModule);
    const processGroup = await groupOf(plan.group);
    const metadata = await save(stateDict, {
      checkpointId: plan.checkpointId,
      signal: controller.signal,
      ...(processGroup ? { processGroup } : {}),
      ...(plan.coordinatorRank !== undefined ? { coordinatorRank: plan.coordinatorRank } : {}),
      ...(plan.base !== undefined ? { base: plan.base } : {}),
      ...(plan.unchanged !== undefined ? { unchanged: plan.unchanged } : {}),
      ...(plan.planError ? { planner: new RefusingPlanner(plan.planError) } : {}),
    });
    // A columnar metadata's maps are views a message cannot carry: send plain maps.
    post({ type: "done", id, metadata: plainMetadata(metadata) });
  } catch (error) {
    post({ type: "failed", id, error: encodeError(error) });
  } finally {
    running.delete(id);
    if (running.size === 0) collectGarbage?.("major");
  }
}

let tasksReported = 0;

function post(message: SaveOutcome): void {
  const workerTasks = workerTasksRun() - tasksReported;
  tasksReported += workerTasks;
  parentPort!.postMessage({ ...message, workerTasks });
}

async function warm(id: number, backendModule: string): Promise<void> {
  try {
    if (backendModule !== "local") await importOnce(backendModule);
    post({ type: "done", id, metadata: undefined });
  } catch (error) {
    post({ type: "failed", id, error: encodeError(error) });
  }
}

parentPort!.on("message", (message: ToSaveThread) => {
  if (message.type === "abort") running.get(message.id)?.abort(decodeReason(message.reason));
  else if (message.type === "warm") void warm(message.id, message.backendModule);
  else void run(message);
});
