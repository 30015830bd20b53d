import { type ProcessGroup, passesByReference } from "../distributed/process-group.js";
import { CheckpointError } from "../errors.js";
import { contentHash } from "../formats/content-hash.js";
import type { Metadata, SavePlan, StoragePrefix } from "./metadata.js";
import { columnarMetadata, metadataColumns } from "./metadata-columns.js";
import type { SavePlanner } from "./planner.js";
import { encodeSavePlan, SavePlanDecoder } from "./save-plan-codec.js";
import { columnarSavePlan, type SavePlanColumns, savePlanColumns } from "./save-plan-columns.js";

/**
 * What a rank sends in the save's `plan` step: its local plan — as the object (a group that
 * passes values by reference, or a plan of plain `WriteItem` objects) or as
 * {@link encodeSavePlan}'s bytes — or, when it is unchanged since the last save, its hash alone.
 * `hash` (XXH3-128 of the encoded plan) and `globalId` (the global plan the rank last received)
 * come with every cacheable plan.
 */
export interface PlanMessage {
  readonly plan?: SavePlan;
  readonly bytes?: Uint8Array;
  readonly hash?: string;
  readonly globalId?: string;
}

/**
 * What the coordinator sends back: the rank's finished plan (object or bytes) with the id of the
 * global plan it belongs to; `cached`, the id of the global plan the rank holds, reused, with this
 * save's storage data; or `resend`: every rank sends its whole plan again.
 */
export interface PlanReply {
  readonly plan?: SavePlan;
  readonly bytes?: Uint8Array;
  readonly globalId?: string;
  readonly cached?: string;
  readonly storageData?: StoragePrefix;
  readonly resend?: true;
}

/** A rank's cache: its last local plan's hash and the finished plan it got for it. */
interface RankCache {
  readonly key: string;
  readonly hash: string;
  readonly globalId: string;
  readonly finished: SavePlanColumns;
}

/** The coordinator's cache: the last global plan, the ranks' hashes it was made from. */
interface CoordinatorCache {
  readonly key: string;
  readonly globalId: string;
  readonly hashes: readonly string[];
  readonly plans: readonly SavePlan[];
  readonly metadata: Metadata;
}

/**
 * Plan caches, one of each kind per process group (a `WeakMap` on the group object: they go with
 * it, and hold only the last save's plans — one global plan, its metadata skeleton and the
 * ranks' finished plans' columns; at 4,096 ranks × 1,000 tensors the coordinator's is the size
 * of one gather).
 */
const rankCaches = new WeakMap<ProcessGroup, RankCache>();
const coordinatorCaches = new WeakMap<ProcessGroup, CoordinatorCache>();

/**
 * The cache key of a save: the planner's {@link SavePlanner.planCacheKey}, the group's size and
 * the coordinator rank; `undefined` (no caching) when the planner has no key or the group has
 * one rank.
 *
 * @param planner - the save's planner.
 * @param pg - its process group.
 * @param coordinator - the coordinator rank.
 */
export function planCacheKey(
  planner: SavePlanner,
  pg: ProcessGroup,
  coordinator: number,
): string | undefined {
  if (pg.size === 1) return undefined; // nothing to gather: hashing the plan would cost a save, not spare it
  const key = planner.planCacheKey?.();
  return key === undefined ? undefined : `${key}|${pg.size}|${coordinator}`;
}

/**
 * The message this rank sends for its local plan: its hash alone when the plan is unchanged since
 * its last save with the same key (and `full` is not asked), else the plan with its hash.
 *
 * @param plan - this rank's local plan (after the writer's `prepareLocalPlan`).
 * @param pg - the process group.
 * @param key - {@link planCacheKey}'s key, or `undefined` for no caching.
 * @param full - send the whole plan (the coordinator asked again).
 */
export async function localPlanMessage(
  plan: SavePlan,
  pg: ProcessGroup,
  key: string | undefined,
  full: boolean,
): Promise<PlanMessage> {
  const columnar = savePlanColumns(plan) !== undefined;
  if (!columnar) return { plan };
  const byReference = passesByReference(pg);
  const bytes = byReference && key === undefined ? undefined : encodeSavePlan(plan);
  if (key === undefined || bytes === undefined) return bytes ? { bytes } : { plan };
  const hash = await contentHash(bytes);
  const cache = rankCaches.get(pg);
  if (!full && cache?.key === key && cache.hash === hash) return { hash, globalId: cache.globalId };
  return byReference ? { plan, hash } : { bytes, hash };
}

/** What the coordinator decided from the ranks' messages. */
export type CoordinatorPlans =
  | { readonly resend: true }
  | {
      readonly resend?: undefined;
      /** Every rank's finished plan. */
      readonly plans: readonly SavePlan[];
      readonly metadata: Metadata;
      /** Whether they were the cached ones. */
      readonly reused: boolean;
      readonly globalId: string;
    };

/**
 * The cached metadata with maps of its own, so a writer that changes what it commits cannot touch
 * the cache. A columnar metadata stays columnar: a new view over the same columns (which nothing
 * changes), with its own `storageMeta`; no object per chunk.
 */
function copyMetadata(m: Metadata): Metadata {
  const columns = metadataColumns(m);
  if (columns)
    return columnarMetadata({
      ...columns,
      plannerData: new Map(columns.plannerData),
      storageMeta: { ...columns.storageMeta },
    });
  return {
    ...m,
    stateDictMetadata: new Map(m.stateDictMetadata),
    plannerData: new Map(m.plannerData),
    storageData: new Map(m.storageData),
    storageMeta: { ...m.storageMeta },
  };
}

/**
 * The coordinator's part: reuses the cached global plan when every rank's hash is the one it
 * cached (and every rank that sent only a hash holds that global plan), plans globally when every
 * rank sent its plan, and asks every rank to send its plan again otherwise. A hash the cache does
 * not know, another key, world size or global plan can therefore never reuse a plan.
 *
 * @param messages - every rank's {@link PlanMessage}, in rank order. When it plans globally, each
 * message that carries bytes is replaced, once decoded, by one without them (its `hash` kept), so
 * the coordinator does not hold every rank's encoded plan beside the decoded ones; the caller
 * should hold the messages only through this array.
 * @param pg - the process group (whose cache is used).
 * @param key - {@link planCacheKey}'s key, or `undefined`.
 * @param planner - plans globally on a miss.
 * @throws what `planner.createGlobalPlan` throws.
 */
export function coordinatePlans(
  messages: PlanMessage[],
  pg: ProcessGroup,
  key: string | undefined,
  planner: SavePlanner,
): CoordinatorPlans {
  const cache = key === undefined ? undefined : coordinatorCaches.get(pg);
  if (
    cache !== undefined &&
    cache.key === key &&
    cache.hashes.length === messages.length &&
    messages.every(
      (m, r) =>
        m.hash === cache.hashes[r] &&
        (m.plan !== undefined || m.bytes !== undefined || m.globalId === cache.globalId),
    )
  ) {
    return {
      plans: cache.plans,
      metadata: copyMetadata(cache.metadata),
      reused: true,
      globalId: cache.globalId,
    };
  }
  if (messages.some((m) => m.plan === undefined && m.bytes === undefined)) return { resend: true };
  const cacheable = key !== undefined && messages.every((m) => m.hash !== undefined);
  const hashes = cacheable ? messages.map((m) => m.hash!) : [];
  const decoder = new SavePlanDecoder();
  const local = messages.map((m, r) => {
    if (m.plan !== undefined) return m.plan;
    const plan = decoder.decode(m.bytes!);
    // The decoder copied the columns out: the bytes (a view of the whole value the group read) go.
    messages[r] = m.hash === undefined ? {} : { hash: m.hash };
    return plan;
  });
  const { plans, metadata } = planner.createGlobalPlan(local);
  const globalId = crypto.randomUUID();
  if (key !== undefined && cacheable) {
    coordinatorCaches.set(pg, {
      key,
      globalId,
      hashes,
      plans,
      metadata: copyMetadata(metadata),
    });
  } else {
    coordinatorCaches.delete(pg);
  }
  return { plans, metadata, reused: false, globalId };
}

/**
 * The coordinator's reply to rank `r`: `cached` when it reuses the global plan the rank holds
 * and the writer left the rank's plan as cached (only its storage data is sent), else the
 * finished plan (as bytes over a group that copies values).
 *
 * @param r - the rank.
 * @param prepared - the rank's plan after the writer's `prepareGlobalPlan`.
 * @param decided - {@link coordinatePlans}' result.
 * @param message - what the rank sent.
 * @param pg - the process group.
 */
export function planReply(
  r: number,
  prepared: SavePlan,
  decided: Extract<CoordinatorPlans, { plans: readonly SavePlan[] }>,
  message: PlanMessage,
  pg: ProcessGroup,
): PlanReply {
  const { globalId } = decided;
  const columns = savePlanColumns(prepared);
  const hashOnly = message.plan === undefined && message.bytes === undefined;
  if (decided.reused && hashOnly && columns !== undefined && columns === savePlanColumns(decided.plans[r]!)) {
    return { cached: globalId, ...(prepared.storageData ? { storageData: prepared.storageData } : {}) };
  }
  if (columns !== undefined && !passesByReference(pg)) return { bytes: encodeSavePlan(prepared), globalId };
  return { plan: prepared, globalId };
}

/**
 * This rank's finished plan from the coordinator's reply, remembering it (with the local plan's
 * hash) for the next save when it has columns.
 *
 * @param reply - the reply.
 * @param sent - what this rank sent.
 * @param pg - the process group.
 * @param key - the cache key, or `undefined`.
 * @throws {@link CheckpointError} `INVALID_PLAN` when the reply reuses a plan this rank does not hold.
 */
export function receivePlan(
  reply: PlanReply,
  sent: PlanMessage,
  pg: ProcessGroup,
  key: string | undefined,
): SavePlan {
  if (reply.cached !== undefined) {
    const cache = rankCaches.get(pg);
    if (cache === undefined || cache.globalId !== reply.cached || cache.key !== key) {
      rankCaches.delete(pg);
      throw new CheckpointError(
        "INVALID_PLAN",
        `Expected this rank to hold global plan ${reply.cached} the coordinator reused, got ${cache?.globalId ?? "none"}`,
      );
    }
    return columnarSavePlan(cache.finished, reply.storageData ? { storageData: reply.storageData } : {});
  }
  const plan = reply.plan ?? new SavePlanDecoder().decode(reply.bytes!);
  const finished = savePlanColumns(plan);
  if (
    key !== undefined &&
    sent.hash !== undefined &&
    reply.globalId !== undefined &&
    finished !== undefined
  ) {
    rankCaches.set(pg, { key, hash: sent.hash, globalId: reply.globalId, finished });
  } else {
    rankCaches.delete(pg);
  }
  return plan;
}

/**
 * Forgets this rank's cached plan (after a failed `plan` step), so its next save sends its plan.
 *
 * @param pg - the process group.
 */
export function forgetRankPlan(pg: ProcessGroup): void {
  rankCaches.delete(pg);
}
