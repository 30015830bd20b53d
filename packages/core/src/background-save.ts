import { HAS_SAVE_THREAD, saveOnSaveThread, warmSaveThread } from "#platform";
import { encodeError } from "./background/error-codec.js";
import type { SaveThreadPlan } from "./background/save-messages.js";
import type { StateDict } from "./model/state-dict.js";
import type { Metadata } from "./plan/metadata.js";
import { DefaultSavePlanner } from "./plan/save-planner.js";
import { type SaveOptions, save } from "./save.js";
import { storageBackendModule } from "./storage/registry.js";

/**
 * What the save thread needs to run this save, or `undefined` when a part of it cannot be
 * described there: a storage writer or planner object of the caller's, an `unchanged` predicate, a group without
 * {@link ProcessGroup.describeForWorker}, a backend registered without its module URL.
 */
function planFor(options: SaveOptions): SaveThreadPlan | undefined {
  if (!HAS_SAVE_THREAD) return undefined; // a page saves on its own thread
  if (options.storageWriter !== undefined || options.planner !== undefined) return undefined;
  if (typeof options.unchanged === "function") return undefined; // a predicate does not clone
  const backendModule = storageBackendModule(options.checkpointId);
  if (backendModule === undefined) return undefined;
  const pg = options.processGroup;
  const group = pg?.describeForWorker?.();
  if (pg && !group) return undefined;
  return {
    checkpointId: options.checkpointId!,
    backendModule,
    ...(group ? { group } : {}),
    ...(options.coordinatorRank !== undefined ? { coordinatorRank: options.coordinatorRank } : {}),
    ...(options.base !== undefined ? { base: options.base } : {}),
    ...(options.unchanged !== undefined ? { unchanged: options.unchanged as readonly string[] } : {}),
  };
}

/**
 * Runs the save of a staged state dict — the part of {@link asyncSave} after `staged` — on the
 * save thread: a `worker_threads` Worker of this process with its own event loop, so the writes,
 * checksums, uploads, the write and finish collectives and the commit go on while the calling
 * thread is busy (a synchronous training step). The rank's group is rebuilt there
 * ({@link ProcessGroup.describeForWorker}) and its backend imported there
 * (`RegisterStorageBackendOptions.moduleUrl`).
 *
 * Falls back to {@link save} on the calling thread (as before) when the save cannot be described
 * for that thread: a `storageWriter` or `planner` of the caller's, an `unchanged` predicate, a process group without
 * `describeForWorker`, a backend registered without its module URL. Ranks of one group must make
 * the same choice (the same options). A state dict holding a value that cannot be cloned (which
 * the plan step refuses) fails there as it would here.
 *
 * @param staged - the staged copy (tensors in shared memory).
 * @param options - the save's options.
 * @returns the committed metadata, as {@link save}.
 * @throws what {@link save} throws, rebuilt with its class, `code`, `failures` and cause.
 */
export function saveInBackground(staged: StateDict, options: SaveOptions): Promise<Metadata> {
  const plan = planFor(options);
  if (!plan) return save(staged, options);
  const onThread = saveOnSaveThread(staged, plan, options.signal);
  if (onThread) return onThread;
  // A value that cannot be cloned: the plan step refuses it. Refuse it there too, so that the other
  // ranks' saves on their save threads fail as with `save` rather than wait for this one.
  const planError = planErrorOf(staged);
  if (planError === undefined) return save(staged, options);
  return saveOnSaveThread({}, { ...plan, planError: encodeError(planError) }, options.signal)!;
}

/** What this rank's plan step throws for a state dict, or `undefined` when it plans it. */
function planErrorOf(stateDict: StateDict): unknown {
  try {
    const planner = new DefaultSavePlanner();
    planner.setUpPlanner(stateDict);
    planner.createLocalPlan();
    return undefined;
  } catch (error) {
    return error;
  }
}

/**
 * Starts {@link asyncSave}'s save thread ahead of the first save, and has it import the module
 * of the backend a checkpoint id resolves to (`@dcpjs/s3`'s, …): without it, the first
 * `asyncSave` pays for both after `staged` (its commit comes that much later). Call it once at
 * start-up; it involves no other rank. Does nothing for a checkpoint id whose saves cannot run
 * on the save thread (see {@link saveInBackground}).
 *
 * @param checkpointId - a checkpoint id (or a prefix above the run's checkpoints) of the backend
 * to import. @default a local folder: the thread alone
 * @returns once the thread is ready.
 * @throws {@link CheckpointError} `IO_ERROR` when the thread cannot start; the module's import error.
 * @example
 * ```ts
 * await warmUpAsyncSave("s3://bucket/run-7");
 * ```
 */
export async function warmUpAsyncSave(checkpointId = "."): Promise<void> {
  const backendModule = storageBackendModule(checkpointId);
  if (backendModule !== undefined) await warmSaveThread(backendModule);
}
