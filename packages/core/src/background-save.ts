import type { SaveThreadPlan } from "./background/save-messages.js";
import { saveOnSaveThread } from "./background/save-thread.js";
import type { StateDict } from "./model/state-dict.js";
import type { Metadata } from "./plan/metadata.js";
import { type SaveOptions, save } from "./save.js";
import { storageBackendModule } from "./storage/registry.js";

/**
 * What the save thread needs to run this save, or `undefined` when a part of it cannot be
 * described there: a storage writer or planner object of the caller's, a group without
 * {@link ProcessGroup.describeForWorker}, a backend registered without its module URL.
 */
function planFor(options: SaveOptions): SaveThreadPlan | undefined {
  if (options.storageWriter !== undefined || options.planner !== undefined) return undefined;
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
 * for that thread: a `storageWriter` or `planner` of the caller's, a process group without
 * `describeForWorker`, a backend registered without its module URL, or a state dict holding a
 * value that cannot be cloned. Ranks of one group must make the same choice (the same options).
 *
 * @param staged - the staged copy (tensors in shared memory).
 * @param options - the save's options.
 * @returns the committed metadata, as {@link save}.
 * @throws what {@link save} throws, rebuilt with its class, `code`, `failures` and cause.
 */
export function saveInBackground(staged: StateDict, options: SaveOptions): Promise<Metadata> {
  const plan = planFor(options);
  return (plan && saveOnSaveThread(staged, plan, options.signal)) ?? save(staged, options);
}
