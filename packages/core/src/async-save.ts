import { saveInBackground } from "./background-save.js";
import { CheckpointError } from "./errors.js";
import type { StateDict } from "./model/state-dict.js";
import type { Metadata } from "./plan/metadata.js";
import type { SaveOptions } from "./save.js";
import { type StagingMode, stageStateDict } from "./staging.js";
import { stagingPoolFor } from "./staging-pool.js";

/** Options of {@link asyncSave}: those of {@link save}, plus staging and concurrency. */
export interface AsyncSaveOptions extends SaveOptions {
  /**
   * The most bytes of tensor data this rank may stage (copy). Staging holds a copy of every tensor
   * and shard of the state dict it copies (their total size, plus up to 63 bytes of alignment
   * each); a larger state dict fails before anything is copied.
   *
   * The copy lies in one `SharedArrayBuffer` kept per process group (or, without one, per process)
   * and reused by the next save — no allocation per save while the shapes stay the same, as DCP's
   * `cache_staged_state_dict`. It is let go when a later save needs more bytes, or less than half
   * (a new buffer of the size needed replaces it), when a save's limit is smaller than it, when no
   * save has used it for 5 minutes, or with its process group. @default Infinity
   */
  readonly maxStagingBytes?: number;
  /**
   * `"copy"`: `staged` resolves once every tensor is copied, and the caller may change its tensors
   * from then on. `"none"`: the caller promises not to change its tensors until `completed`
   * settles — tensors in a `SharedArrayBuffer` are saved from where they lie (no copy, `staged`
   * resolves at once), others are still copied (the save reads only shared memory, which its
   * worker threads can see). As DCP's choice of `AsyncStager` (staging, or none).
   *
   * The copy is what a save costs the calling thread. On Linux with glibc, a copy shorter than
   * glibc's non-temporal threshold (`glibc.cpu.x86_non_temporal_threshold`, a fraction of the
   * shared cache) reads its destination before writing it; a job that stages large tensors often
   * can lower the threshold when it starts (`GLIBC_TUNABLES`, see docs/benchmarks.md, "asyncSave").
   * @default "copy"
   */
  readonly staging?: StagingMode;
  /**
   * What a call does while an earlier `asyncSave` on the same process group (or, without one, in
   * this process) is still running: `"wait"` stages only once the earlier save has completed
   * (so at most one staged copy exists, and collectives keep their order); `"fail"` rejects both
   * promises with `SAVE_IN_PROGRESS`. @default "wait"
   */
  readonly whenBusy?: "wait" | "fail";
}

/** The two stages of an {@link asyncSave}. */
export interface AsyncSaveResult {
  /** Resolves once every tensor's bytes are copied: the caller may change its tensors from then on. */
  readonly staged: Promise<void>;
  /** Resolves with the committed metadata once the checkpoint is written, as {@link save}. */
  readonly completed: Promise<Metadata>;
}

const SINGLE_PROCESS_KEY = {};
const inFlight = new WeakMap<object, Promise<unknown>>();

/**
 * Saves a state dict in the background, as DCP's `async_save` with a staging step: first every
 * tensor is copied into staging buffers (`staged` resolves — training may change its tensors),
 * then the save runs on the copy (`completed` resolves with the metadata) — on a thread of its
 * own where it can, so a busy calling thread does not stall it (see {@link saveInBackground}).
 *
 * Memory: the staging copy is the size of this rank's tensors and shards (bounded by
 * `maxStagingBytes`), held until `completed` settles. Calls on one process group run one at a
 * time (see `whenBusy`), and every rank must make the same calls in the same order.
 *
 * @param stateDict - this rank's state dict.
 * @param options - see {@link AsyncSaveOptions}.
 * @returns the `staged` and `completed` promises.
 * @throws (through the promises) {@link CheckpointError} `INVALID_ARGUMENT` when the tensors exceed
 * `maxStagingBytes`, `SAVE_IN_PROGRESS` with `whenBusy: "fail"`, and everything {@link save} throws.
 * @example
 * ```ts
 * const { staged, completed } = asyncSave(stateDict, { checkpointId: "./ckpt/step-200" });
 * await staged;          // keep training from here
 * // …
 * await completed;       // before relying on the checkpoint
 * ```
 */
export function asyncSave(stateDict: StateDict, options: AsyncSaveOptions): AsyncSaveResult {
  const key = options.processGroup ?? SINGLE_PROCESS_KEY;
  const previous = inFlight.get(key);
  if (previous && options.whenBusy === "fail") {
    const error = new CheckpointError(
      "SAVE_IN_PROGRESS",
      'Expected no asyncSave to be running on this process group, but one is (whenBusy: "fail")',
    );
    const staged = Promise.reject(error);
    const completed = Promise.reject(error);
    staged.catch(() => {});
    completed.catch(() => {});
    return { staged, completed };
  }
  const limit = options.maxStagingBytes ?? Number.POSITIVE_INFINITY;
  const stagedCopy = (async () => {
    await previous?.catch(() => {});
    return stageStateDict(stateDict, limit, {
      pool: stagingPoolFor(options.processGroup),
      staging: options.staging ?? "copy",
    });
  })();
  const { maxStagingBytes: _, whenBusy: __, staging: ___, ...saveOptions } = options;
  const completed = stagedCopy.then((copy) =>
    saveInBackground(copy.stateDict, saveOptions).finally(() => copy.release()),
  );
  const staged = stagedCopy.then(() => undefined);
  staged.catch(() => {});
  completed.catch(() => {});
  inFlight.set(key, completed);
  completed
    .finally(() => {
      if (inFlight.get(key) === completed) inFlight.delete(key);
    })
    .catch(() => {});
  return { staged, completed };
}
