import { allGather, reduceScatter } from "./distributed/collectives.js";
import { createSingleProcessGroup, type ProcessGroup } from "./distributed/process-group.js";
import { CheckpointError, CheckpointException, throwIfAborted } from "./errors.js";
import type { StateDict } from "./model/state-dict.js";
import type { ShardedTensor, Tensor } from "./model/tensor.js";
import { DefaultLoadPlanner, EmptyStateDictLoadPlanner } from "./plan/load-planner.js";
import type { LoadPlan } from "./plan/metadata.js";
import type { LoadPlanner } from "./plan/planner.js";
import { createStorageReader } from "./storage/registry.js";
import type { StorageReader } from "./storage/storage.js";

/** Options of {@link load}. */
export interface LoadOptions {
  /**
   * What to load: a local folder or `s3://bucket/prefix`. With `storageReader`, it resets the
   * reader to this id; one of the two is required.
   */
  readonly checkpointId?: string;
  /** The storage to read through. @default chosen from `checkpointId` */
  readonly storageReader?: StorageReader;
  /** The planner. @default a new {@link DefaultLoadPlanner} (strict about keys; `strictDtype` as given) */
  readonly planner?: LoadPlanner;
  /**
   * Refuse (`DTYPE_MISMATCH`) a target tensor whose dtype differs from the saved one. By default
   * it is loaded cast, as DCP's `dcp.load` does (its reader ends in `target.copy_(saved)`): a
   * `bfloat16` checkpoint loads into `float32` tensors, with torch's `copy_` semantics (see
   * docs/format.md, "Cast on load"). Applies to the default planner; with `planner`, set
   * `DefaultLoadPlannerOptions.strictDtype` on it instead (both given: `INVALID_ARGUMENT`).
   * @default false
   */
  readonly strictDtype?: boolean;
  /**
   * Skip state-dict keys the checkpoint does not have, leaving them as they are, instead of failing
   * with `MISSING_KEY` (DCP's `allow_partial_load`). Applies to the default planner; with
   * `planner`, set `DefaultLoadPlannerOptions.allowPartialLoad` on it instead (both given:
   * `INVALID_ARGUMENT`).
   * @default false
   */
  readonly allowPartialLoad?: boolean;
  /** This rank's process group. @default a single-rank group */
  readonly processGroup?: ProcessGroup;
  /** The rank that plans globally. @default 0 */
  readonly coordinatorRank?: number;
  /** Aborts the load. */
  readonly signal?: AbortSignal;
}

/**
 * Loads a checkpoint into a state dict in place, as DCP's `load`: every rank reads `.metadata`,
 * plans the copies its tensors and shards need from the saved chunks (any sharding, any world
 * size), reads and verifies them, and writes them into its tensors' memory; non-tensor values are
 * replaced in the state dict.
 *
 * @typeParam T - the state dict's own type, kept: the promise resolves to the same object, filled in.
 * @param stateDict - this rank's state dict, with tensors of the saved global shapes (of the saved
 * dtypes, or of others to load cast: see {@link LoadOptions.strictDtype}).
 * @param options - see {@link LoadOptions}.
 * @returns `stateDict` itself, once loaded (typed `T`; the values in it are those saved).
 * @throws {@link CheckpointException} on every rank when any rank fails; its `failures` name the
 * failing ranks and carry codes such as `INCOMPLETE_CHECKPOINT`, `MISSING_KEY`,
 * `SIZE_MISMATCH`, `DTYPE_MISMATCH`, `CHECKSUM_MISMATCH`, `TRUNCATED`, `MALFORMED_METADATA`;
 * `CHECKPOINT_SUPERSEDED` only when newer saves committed at this id while it read
 * {@link LOAD_SUPERSEDED_RETRIES} + 1 times in a row — each time, every rank starts again on the
 * newer checkpoint, so a load racing an overwrite returns the old or the new checkpoint whole. Its
 * own `code` is the code the failures share (one process: the rank's own code), else
 * `COLLECTIVE_FAILED`. A {@link CheckpointError} `INVALID_ARGUMENT`, before any step, when
 * `planner` is given with `strictDtype` or `allowPartialLoad`.
 * @example
 * ```ts
 * const target = await load(
 *   { model: { w: emptyTensor("float32", [2, 2]) }, step: 0 },
 *   { checkpointId: "./ckpt/step-100" },
 * ); // target.step: number, target.model.w: Tensor
 * ```
 */
export async function load<T extends StateDict>(stateDict: T, options: LoadOptions): Promise<T> {
  if (options.planner !== undefined && options.strictDtype !== undefined)
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      "Expected strictDtype or planner, got both: strictDtype applies to the default planner; set DefaultLoadPlannerOptions.strictDtype on yours",
    );
  if (options.planner !== undefined && options.allowPartialLoad !== undefined)
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      "Expected allowPartialLoad or planner, got both: allowPartialLoad applies to the default planner; set DefaultLoadPlannerOptions.allowPartialLoad on yours",
    );
  const pg = options.processGroup ?? createSingleProcessGroup();
  const coordinator = options.coordinatorRank ?? 0;
  const isCoordinator = pg.rank === coordinator;
  const reader = options.storageReader ?? (await createStorageReader(options.checkpointId));
  reader.reset(options.checkpointId);
  const planner =
    options.planner ??
    new DefaultLoadPlanner({
      ...(options.strictDtype !== undefined && { strictDtype: options.strictDtype }),
      ...(options.allowPartialLoad !== undefined && { allowPartialLoad: options.allowPartialLoad }),
    });
  const { signal } = options;

  // A newer save that commits at this id while the load runs removes the files the load planned
  // from: every rank then sees the same CHECKPOINT_SUPERSEDED failures and starts again together.
  for (let attempt = 0; ; attempt++) {
    try {
      const plan = await reduceScatter<LoadPlan, LoadPlan>(
        pg,
        "plan",
        async () => {
          const metadata = await reader.readMetadata(signal);
          planner.setUpPlanner(stateDict, metadata, isCoordinator);
          reader.setUpStorageReader(metadata, { isCoordinator, rank: pg.rank, worldSize: pg.size });
          return reader.prepareLocalPlan(planner.createLocalPlan());
        },
        async (all) => reader.prepareGlobalPlan(planner.createGlobalPlan(all)),
        coordinator,
      );
      await allGather(pg, "read", async () => reader.readData(planner.finishPlan(plan), planner, signal));
      return stateDict;
    } catch (error) {
      if (attempt >= LOAD_SUPERSEDED_RETRIES || !supersededEverywhere(error)) throw error;
      throwIfAborted(signal);
    }
  }
}

/**
 * How many times {@link load} starts again when a newer save commits at the checkpoint id while
 * it reads (`CHECKPOINT_SUPERSEDED` on every failing rank); past it, that error is thrown.
 */
export const LOAD_SUPERSEDED_RETRIES = 10;

/** Whether a collective failed on every failing rank only because the checkpoint was superseded. */
function supersededEverywhere(error: unknown): boolean {
  return (
    error instanceof CheckpointException &&
    error.failures.length > 0 &&
    error.failures.every((f) => f.code === "CHECKPOINT_SUPERSEDED")
  );
}

/**
 * The type of a state dict as {@link loadStateDictFromKeys} returns it, from the type it was
 * saved with: every {@link ShardedTensor} (and {@link Tensor}) a whole `Tensor` of the saved dtype
 * and global shape, values as they are, nesting kept (`readonly` dropped: the result is fresh).
 * `Loaded<StateDict>` — the default — describes any loaded state dict.
 *
 * @typeParam T - the saved state dict's type (or any part of it).
 */
export type Loaded<T> = T extends Tensor | ShardedTensor
  ? Tensor
  : T extends Uint8Array | Date
    ? T
    : T extends readonly (infer E)[]
      ? Loaded<E>[]
      : T extends object
        ? { -readonly [K in keyof T]: Loaded<T[K]> }
        : T;

/** Options of {@link loadStateDictFromKeys}. */
export interface LoadStateDictFromKeysOptions extends Omit<LoadOptions, "planner" | "strictDtype"> {
  /** Load only these fqns and what lies below them; all when omitted. */
  readonly keys?: readonly string[];
}

/**
 * Reads a checkpoint into a fresh state dict built from its own metadata, as DCP's
 * `_load_state_dict_from_keys` (with `_EmptyStateDictLoadPlanner`): every tensor whole, of its
 * saved dtype and global shape; every value as saved; nested as saved.
 *
 * The result's type: `Loaded<StateDict>` by default (any leaf a `Tensor` or a value: narrow with
 * `isTensor`); with a type parameter, the shape you expect, as saved — e.g. the type of the state
 * dict you passed to `save` — whose sharded tensors become whole `Tensor`s ({@link Loaded}).
 * The type parameter is not checked against the checkpoint: it is your statement of what it holds
 * (validate it yourself when the checkpoint may come from elsewhere).
 *
 * @typeParam T - the expected shape, as saved. @default StateDict
 * @param options - see {@link LoadStateDictFromKeysOptions}.
 * @returns the state dict.
 * @throws {@link CheckpointException} as {@link load}.
 * @example
 * ```ts
 * const sd = await loadStateDictFromKeys<{ model: { w: Tensor }; step: number }>({ checkpointId: "./ckpt/step-100" });
 * sd.model.w.shape; // a Tensor, no cast
 * sd.step; // number
 * ```
 */
export async function loadStateDictFromKeys<T extends StateDict = StateDict>(
  options: LoadStateDictFromKeysOptions,
): Promise<Loaded<T>> {
  const planner = new EmptyStateDictLoadPlanner(options.keys);
  // Its tensors take the saved dtypes: a `strictDtype` passed through (an untyped caller) has no say.
  const { strictDtype: _, ...rest } = options as LoadStateDictFromKeysOptions & { strictDtype?: boolean };
  await load({}, { ...rest, planner });
  return planner.result as Loaded<T>;
}
