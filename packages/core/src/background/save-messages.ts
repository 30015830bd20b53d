import type { WorkerGroupDescription } from "../distributed/process-group.js";
import type { StateDict } from "../model/state-dict.js";
import type { Metadata } from "../plan/metadata.js";
import type { EncodedError } from "./error-codec.js";

/** What a save on the save thread needs besides the staged state dict: all of it cloneable. */
export interface SaveThreadPlan {
  /** The checkpoint id, resolved on the save thread. */
  readonly checkpointId: string;
  /** The module that registers the id's backend (its URL), or `local` for a local folder. */
  readonly backendModule: string;
  /** The rank's group, rebuilt on the save thread; absent: a single-rank group. */
  readonly group?: WorkerGroupDescription;
  /** As `SaveOptions.coordinatorRank`. */
  readonly coordinatorRank?: number;
  /** As `SaveOptions.base`. */
  readonly base?: string;
  /** As `SaveOptions.unchanged`, as fqns and prefixes (a predicate does not go to the thread). */
  readonly unchanged?: readonly string[];
  /**
   * The error this rank's plan step throws, found here when the state dict could not be handed
   * over (a value that cannot be cloned, which the planner refuses too): the thread then plans
   * an empty state dict with a planner that throws it, so every rank fails as with `save`.
   */
  readonly planError?: EncodedError;
}

/**
 * A message to the save thread: run a save, abort one (with the encoded `signal.reason`), or
 * import a backend's module ahead of the first save (`warm`; `local` imports nothing).
 */
export type ToSaveThread =
  | {
      readonly type: "save";
      readonly id: number;
      readonly stateDict: StateDict;
      readonly plan: SaveThreadPlan;
    }
  | { readonly type: "abort"; readonly id: number; readonly reason: unknown }
  | { readonly type: "warm"; readonly id: number; readonly backendModule: string };

/**
 * How a request to the save thread ended: a save committed (its metadata), a warm-up is done
 * (`undefined`), or either failed (its encoded error).
 */
export type SaveOutcome =
  | { readonly type: "done"; readonly id: number; readonly metadata: Metadata | undefined }
  | { readonly type: "failed"; readonly id: number; readonly error: EncodedError };

/**
 * A message from the save thread: a save's outcome, and `workerTasks`, the tasks the thread's
 * own worker pool ran since its last message.
 */
export type FromSaveThread = SaveOutcome & { readonly workerTasks: number };
