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
}

/** A message to the save thread: run a save, or abort one (with the encoded `signal.reason`). */
export type ToSaveThread =
  | {
      readonly type: "save";
      readonly id: number;
      readonly stateDict: StateDict;
      readonly plan: SaveThreadPlan;
    }
  | { readonly type: "abort"; readonly id: number; readonly reason: unknown };

/** How a save on the save thread ended: committed (its metadata) or failed (its encoded error). */
export type SaveOutcome =
  | { readonly type: "done"; readonly id: number; readonly metadata: Metadata }
  | { readonly type: "failed"; readonly id: number; readonly error: EncodedError };

/**
 * A message from the save thread: a save's outcome, and `workerTasks`, the tasks the thread's
 * own worker pool ran since its last message.
 */
export type FromSaveThread = SaveOutcome & { readonly workerTasks: number };
