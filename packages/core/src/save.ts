import { allReduce, lazyValues, reduceScatter } from "./distributed/collectives.js";
import {
  createSingleProcessGroup,
  type ProcessGroup,
  passesByReference,
} from "./distributed/process-group.js";
import { CheckpointError, CheckpointException, throwIfAborted } from "./errors.js";
import type { StateDict } from "./model/state-dict.js";
import type { Metadata, SavePlan, WriteResult } from "./plan/metadata.js";
import { plainMetadata } from "./plan/metadata-columns.js";
import {
  coordinatePlans,
  forgetRankPlan,
  localPlanMessage,
  type PlanMessage,
  type PlanReply,
  planCacheKey,
  planReply,
  receivePlan,
} from "./plan/plan-exchange.js";
import type { SavePlanner } from "./plan/planner.js";
import { savePlanColumns } from "./plan/save-plan-columns.js";
import { DefaultSavePlanner } from "./plan/save-planner.js";
import { decodeWriteResults, encodeWriteResults } from "./plan/write-result-codec.js";
import { writeResultColumns, writeResultsView } from "./plan/write-result-columns.js";
import type { UnchangedItems } from "./storage/incremental-base.js";
import type { BaseLease } from "./storage/references.js";
import { createStorageWriter } from "./storage/registry.js";
import type { StorageWriter } from "./storage/storage.js";

/**
 * Checks that every rank saves to the same checkpoint: ranks of two jobs that met in one process
 * group by mistake (one group id, no job id) would otherwise commit a checkpoint whose files are
 * spread over two places.
 * @throws {@link CheckpointError} `GROUP_CONFLICT` naming the first two ids that differ.
 */
function assertOneCheckpoint(ids: readonly (string | undefined)[]): void {
  const other = ids.findIndex((id) => id !== ids[0]);
  if (other > 0) {
    throw new CheckpointError(
      "GROUP_CONFLICT",
      `Expected every rank to save to one checkpoint, but rank 0 saves to ${ids[0]} and rank ${other} to ${ids[other]}: two jobs in one process group? (give each job its own DCPJS_JOB_ID or group id)`,
    );
  }
}

/** Options of {@link save}. */
export interface SaveOptions {
  /**
   * Where to save: a local folder or `s3://bucket/prefix`. With `storageWriter`, it resets the
   * writer to this id; one of the two is required.
   */
  readonly checkpointId?: string;
  /** The storage to write through. @default chosen from `checkpointId` */
  readonly storageWriter?: StorageWriter;
  /** The planner. @default a new {@link DefaultSavePlanner} */
  readonly planner?: SavePlanner;
  /** This rank's process group. @default a single-rank group */
  readonly processGroup?: ProcessGroup;
  /** The rank that plans globally and commits `.metadata`. @default 0 */
  readonly coordinatorRank?: number;
  /** Aborts the save; nothing is committed. */
  readonly signal?: AbortSignal;
  /**
   * Saves incrementally against this earlier checkpoint — a sibling of `checkpointId` (same
   * parent folder or prefix: `{ checkpointId: "run/step-110", base: "run/step-100" }`), saved by
   * dcpjs in its own format: items whose bytes equal the base's (their XXH3-128 content hashes,
   * computed before anything is written) are not written but recorded as references to the base's
   * files (flat: to the checkpoint that holds the bytes, the base or one it references); a load
   * reads through them, verified as always. Every rank reads the base's `.metadata`; an item whose
   * chunk (fqn, offsets, sizes, dtype) the base did not save alike is written. At most
   * `MAX_REFERENCED_CHECKPOINTS` (64) checkpoints are referenced; past it the items of those
   * holding the fewest bytes are written anew. Remove a base only with `dcp rm`/`dcp gc`, which
   * know the references. @default none: every item is written
   */
  readonly base?: string;
  /**
   * With `base`: items declared unchanged since the base (frozen parameters) — a predicate over
   * fqns, or fqns and prefixes (`"encoder"` matches `encoder.*`) — referenced without hashing.
   * @default none: every item is compared by its content hash
   */
  readonly unchanged?: UnchangedItems;
}

/**
 * Saves a state dict as a (possibly sharded) checkpoint, as DCP's `save`. Every rank of the
 * group calls it with its own state dict: ranks plan locally, the coordinator builds the global
 * plan (deduplicating replicated items, validating chunks), every rank writes its data files, and
 * the coordinator commits `.metadata` last — a checkpoint is loadable only once complete.
 *
 * A rank whose local plan is unchanged since its last save over the same process group sends the
 * plan's hash instead of the plan, and the coordinator reuses its global plan when every rank's
 * hash matches (plan caching, as DCP's; `DefaultSavePlannerOptions.planCaching`); otherwise every
 * rank sends its plan, in a second round of the `plan` step when some had sent a hash.
 *
 * It runs on the calling thread's event loop, also when not awaited: a save left running while
 * a synchronous training step holds the thread makes no progress until the thread is free. To
 * save in the background on a thread of its own, use {@link asyncSave}.
 *
 * @param stateDict - this rank's nested state dict (tensors, sharded tensors, values).
 * @param options - see {@link SaveOptions}.
 * @returns the committed metadata (the same on every rank).
 * @throws {@link CheckpointException} on every rank when any rank fails in any step; its
 * `failures` name the failing ranks (step `plan` or `write`), and its `code` is their shared code
 * (one process: the rank's own code, e.g. `INVALID_STATE_DICT`), else `COLLECTIVE_FAILED`;
 * `GROUP_CONFLICT` (step `plan`) when ranks save to different checkpoint ids. A rank that loses contact with
 * the coordinator after writing its data (a `TIMEOUT`) first asks the writer whether the commit
 * happened anyway ({@link StorageWriter.committedMetadata}), and returns that metadata if so.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when neither `checkpointId` nor
 * `storageWriter` is given, or `unchanged` without `base`. With `base`, in the `plan` step:
 * `INVALID_ARGUMENT` when it is not a sibling dcpjs checkpoint, the writer cannot save
 * incrementally (a torch or safetensors format), or an item declared unchanged is not in the
 * base alike; `NOT_FOUND` naming the base when it is not committed.
 * @example
 * ```ts
 * await save({ model: { w: tensor("float32", [2, 2]) }, step: 100 }, { checkpointId: "./ckpt/step-100" });
 * ```
 */
export async function save(stateDict: StateDict, options: SaveOptions): Promise<Metadata> {
  if (options.unchanged !== undefined && options.base === undefined)
    throw new CheckpointError("INVALID_ARGUMENT", "Expected base with unchanged, got unchanged alone");
  const held: { lease?: BaseLease } = {};
  try {
    return await saveSteps(stateDict, options, held);
  } finally {
    await held.lease?.release();
  }
}

/** {@link save}'s steps; an incremental save's lease on its base goes into `held`, for `save` to release. */
async function saveSteps(
  stateDict: StateDict,
  options: SaveOptions,
  held: { lease?: BaseLease },
): Promise<Metadata> {
  const pg = options.processGroup ?? createSingleProcessGroup();
  const coordinator = options.coordinatorRank ?? 0;
  const isCoordinator = pg.rank === coordinator;
  const writer = options.storageWriter ?? (await createStorageWriter(options.checkpointId));
  writer.reset(options.checkpointId);
  const planner = options.planner ?? new DefaultSavePlanner();
  const { signal, base } = options;
  let globalMetadata: Metadata | undefined;
  /** The coordinator's: every rank's finished plan (what each rank's write results name by position). */
  let finishedPlans: readonly SavePlan[] = [];

  const cacheKey = planCacheKey(planner, pg, coordinator);
  let local: SavePlan | undefined;
  let sent: PlanMessage | undefined;
  // The plan step: each rank's local plan (or its hash, when unchanged since the last save) to the
  // coordinator, each rank's finished plan back. A second round, with every plan, only when the
  // coordinator cannot reuse its cached global plan for ranks that sent hashes.
  const planRound = (full: boolean) =>
    reduceScatter<{ message: PlanMessage; checkpointId: string | undefined }, PlanReply>(
      pg,
      "plan",
      async () => {
        throwIfAborted(signal);
        if (local === undefined) {
          planner.setUpPlanner(stateDict, { isCoordinator, storageMeta: writer.storageMeta() });
          writer.setUpStorageWriter({ isCoordinator, rank: pg.rank, worldSize: pg.size });
          if (base !== undefined) held.lease = await useBase(writer, base, options.unchanged, signal);
          local = await writer.prepareLocalPlan(planner.createLocalPlan());
        }
        sent = await localPlanMessage(local, pg, cacheKey, full);
        return {
          message: sent,
          checkpointId: writer.storageMeta().checkpointId,
        };
      },
      async (all) => {
        assertOneCheckpoint(all.map((a) => a.checkpointId));
        const messages = all.map((a) => a.message);
        // Held through `messages` alone, so each plan's bytes go once decoded (`coordinatePlans`).
        all.length = 0;
        const decided = coordinatePlans(messages, pg, cacheKey, planner);
        if (decided.resend) return messages.map((): PlanReply => ({ resend: true }));
        globalMetadata = decided.metadata;
        const prepared = writer.prepareGlobalPlan([...decided.plans]);
        finishedPlans = prepared;
        // Each reply (an encoded plan over a group that copies values) made as the scatter sends it.
        return lazyValues(prepared.length, (r) => planReply(r, prepared[r]!, decided, messages[r]!, pg));
      },
      coordinator,
    );
  let plan: SavePlan;
  try {
    let reply = await planRound(false);
    if (reply.resend) reply = await planRound(true);
    plan = receivePlan(reply, sent!, pg, cacheKey);
  } catch (error) {
    forgetRankPlan(pg);
    throw error;
  }

  let wrote = false;
  try {
    return await allReduce<WriteResult[] | { readonly resultBytes: Uint8Array }, Metadata>(
      pg,
      "write",
      async () => {
        const results = await writer.writeData(planner.finishPlan(plan), planner, signal);
        wrote = true;
        // Over a group that copies values, results held as columns of the plan the coordinator
        // sent go as bytes (no object per item on either side); any other as objects.
        const columns = passesByReference(pg) ? undefined : writeResultColumns(results);
        const sentPlan = savePlanColumns(plan);
        return columns !== undefined && sentPlan !== undefined && columns.plan === sentPlan
          ? { resultBytes: encodeWriteResults(columns) }
          : results;
      },
      async (sent) => {
        const results = sent.map((s, r) => {
          if (Array.isArray(s)) return s;
          const planColumns = savePlanColumns(finishedPlans[r] ?? { items: [] });
          if (planColumns === undefined)
            throw new CheckpointError(
              "INVALID_PLAN",
              `Expected the coordinator to hold rank ${r}'s finished plan as columns for its encoded write results, got none`,
            );
          return writeResultsView(
            decodeWriteResults((s as { resultBytes: Uint8Array }).resultBytes, planColumns),
          );
        });
        const committed = (await writer.finish(globalMetadata!, results, signal)) ?? globalMetadata!;
        // A columnar metadata's maps are views an encoding group cannot carry: send plain maps.
        return passesByReference(pg) ? committed : plainMetadata(committed);
      },
      coordinator,
    );
  } catch (error) {
    // The coordinator may have committed and died before telling us: a committed save is a success.
    // Only the group's own timeout (not a rank's TIMEOUT carried by a CheckpointException).
    const lostContact =
      error instanceof CheckpointError && !(error instanceof CheckpointException) && error.code === "TIMEOUT";
    if (!isCoordinator && wrote && lostContact && writer.committedMetadata) {
      const committed = await writer.committedMetadata(signal).catch(() => undefined);
      if (committed) return committed;
    }
    throw error;
  }
}

/**
 * Makes the save incremental on this rank (`writer.useBase`): leases and reads the base.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when the writer cannot save incrementally.
 */
async function useBase(
  writer: StorageWriter,
  base: string,
  unchanged: UnchangedItems | undefined,
  signal: AbortSignal | undefined,
): Promise<BaseLease> {
  if (!writer.useBase)
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected a storage writer that saves incrementally (FileSystemWriter, S3StorageWriter) with base, got ${writer.constructor.name}`,
    );
  return writer.useBase(base, unchanged !== undefined ? { unchanged } : {}, signal);
}
