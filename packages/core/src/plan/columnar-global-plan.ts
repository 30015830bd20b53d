import { CheckpointError } from "../errors.js";
import { DTYPE_BYTES, DTYPES } from "../model/dtype.js";
import { overlappingPairs } from "../model/geometry.js";
import type { ObjectPath } from "../model/state-dict.js";
import { assembleSaveMetadata, type PlannedEntries } from "./assemble-metadata.js";
import { dedupOwners } from "./dedup-owners.js";
import type { Metadata } from "./metadata.js";
import { metadataColumns } from "./metadata-columns.js";
import {
  fqnNdim,
  fqnShape,
  hasDistinctFqns,
  itemNdim,
  plannerDataMappings,
  type SavePlanColumns,
} from "./save-plan-columns.js";

/** The coordinator's global plan over columns: one finished plan per rank, and the metadata. */
export interface ColumnarGlobalPlan {
  /** Per rank: the items it writes (the kept ones), with their index hints (`chunkIndex`). */
  readonly plans: SavePlanColumns[];
  /** The checkpoint's metadata (no storage data yet). */
  readonly metadata: Metadata;
  /** What the metadata was assembled from: for {@link validateColumnarGlobalPlan}. */
  readonly entries: PlannedEntries;
}

/** {@link dedupSavePlanColumns}' result: the global fqn table, each plan's map into it, and what each plan keeps. */
export interface DedupedColumns {
  /** The global fqn table: global id → fqn, in first-appearance order. */
  readonly fqns: readonly string[];
  /** Per plan: its fqn ids → global ids (plans that share a fqn table share the map). */
  readonly maps: readonly Int32Array[];
  /** Per plan: 1 for each item it keeps. */
  readonly keep: readonly Uint8Array[];
}

/**
 * Dedup of replicated items over columns, as DCP's `dedup_save_plans` and `dedupSavePlans` (the
 * same choices): the first step of {@link createColumnarGlobalPlan}.
 *
 * @param all - every rank's local plan as columns, in rank order.
 * @param saveToLowestRank - give every replicated item to the lowest rank holding it.
 */
export function dedupSavePlanColumns(
  all: readonly SavePlanColumns[],
  saveToLowestRank: boolean,
): DedupedColumns {
  const { fqns, maps } = globalFqnIds(all);
  return { fqns, maps, keep: dedup(all, maps, saveToLowestRank) };
}

/** Maps each plan's fqn ids to global ids; plans that share one fqn table (the same array) share the map. */
function globalFqnIds(all: readonly SavePlanColumns[]): { fqns: readonly string[]; maps: Int32Array[] } {
  // One table shared by every plan (one rank), known to hold each fqn once: it is the global one.
  const table = all[0]?.fqns;
  if (table !== undefined && hasDistinctFqns(table) && all.every((c) => c.fqns === table)) {
    const identity = new Int32Array(table.length);
    for (let f = 0; f < identity.length; f++) identity[f] = f;
    return { fqns: table, maps: all.map(() => identity) };
  }
  const ids = new Map<string, number>();
  const fqns: string[] = [];
  const maps: Int32Array[] = [];
  let previous: readonly string[] | undefined;
  let previousMap = new Int32Array(0);
  for (const c of all) {
    if (c.fqns !== previous) {
      previousMap = new Int32Array(c.fqns.length);
      c.fqns.forEach((fqn, f) => {
        let g = ids.get(fqn);
        if (g === undefined) {
          g = fqns.length;
          ids.set(fqn, g);
          fqns.push(fqn);
        }
        previousMap[f] = g;
      });
      previous = c.fqns;
    }
    maps.push(previousMap);
  }
  return { fqns, maps };
}

/** Equal as `offsetKey` compares offsets (NaN equals NaN, -0 equals 0). */
const sameNumber = (a: number, b: number) => a === b || (Number.isNaN(a) && Number.isNaN(b));

/** A 32-bit hash of a float64, for the dedup table. */
function mix(h: number, x: number): number {
  const lo = x | 0;
  const hi = (x / 4294967296) | 0;
  h = Math.imul(h ^ lo, 0x9e3779b1);
  h = Math.imul(h ^ hi, 0x85ebca77);
  return h ^ (h >>> 15);
}

/**
 * Which plan writes each distinct item, as DCP's `dedup_save_plans` (and `dedupSavePlans`):
 * items numbered in first-appearance order by (fqn, offsets) in an open-addressing table over the
 * columns; each goes to the holder with the smallest planned size so far (ties → lowest rank), or
 * the lowest holder with `saveToLowestRank`. Linear in items, no object per item.
 *
 * @returns per plan, 1 for each item it keeps.
 */
function dedup(
  all: readonly SavePlanColumns[],
  maps: readonly Int32Array[],
  saveToLowestRank: boolean,
): Uint8Array[] {
  if (all.length === 1) return [new Uint8Array(all[0]!.fqnIds.length).fill(1)];
  let total = 0;
  for (const c of all) total += c.fqnIds.length;
  let capacity = 16;
  while (capacity < 2 * total) capacity *= 2;
  const mask = capacity - 1;
  const slots = new Int32Array(capacity);
  // Each slot's key hash: most probes that meet another key stop here, without reading its plan.
  const slotHashes = new Int32Array(capacity);
  const firstPlan = new Int32Array(total);
  const firstItem = new Int32Array(total);
  let distinct = 0;
  const itemIds = all.map((c, p) => {
    const map = maps[p]!;
    const column = new Int32Array(c.fqnIds.length);
    for (let i = 0; i < column.length; i++) {
      const g = map[c.fqnIds[i]!]!;
      const nd = itemNdim(c, i);
      const b = c.boxStarts[i]!;
      let h = mix(g, nd);
      for (let d = 0; d < nd; d++) h = mix(h, c.boxes[b + d]!);
      let slot = h & mask;
      let id = -1;
      for (;;) {
        const s = slots[slot]!;
        if (s === 0) break;
        if (slotHashes[slot] !== h) {
          slot = (slot + 1) & mask;
          continue;
        }
        const q = firstPlan[s - 1]!;
        const j = firstItem[s - 1]!;
        const o = all[q]!;
        if (maps[q]![o.fqnIds[j]!] === g && itemNdim(o, j) === nd) {
          const ob = o.boxStarts[j]!;
          let same = true;
          for (let d = 0; d < nd && same; d++) same = sameNumber(o.boxes[ob + d]!, c.boxes[b + d]!);
          if (same) {
            id = s - 1;
            break;
          }
        }
        slot = (slot + 1) & mask;
      }
      if (id < 0) {
        id = distinct++;
        firstPlan[id] = p;
        firstItem[id] = i;
        slots[slot] = id + 1;
        slotHashes[slot] = h;
      }
      column[i] = id;
    }
    return column;
  });
  const owner = dedupOwners(itemIds, distinct, saveToLowestRank, (id) =>
    storageSize(all[firstPlan[id]!]!, firstItem[id]!),
  );
  return itemIds.map((column, p) => {
    const keep = new Uint8Array(column.length);
    for (let i = 0; i < column.length; i++) keep[i] = owner[column[i]!] === p ? 1 : 0;
    return keep;
  });
}

/** `tensorStorageSize` of item `i`: the global tensor's bytes, or 0 for a bytes item. */
function storageSize(c: SavePlanColumns, i: number): number {
  if (c.types[i] === 2) return 0;
  const f = c.fqnIds[i]!;
  let n = 1;
  for (let k = c.shapeStarts[f]!; k < c.shapeStarts[f + 1]!; k++) n *= c.shapes[k]!;
  return n * DTYPE_BYTES[DTYPES[c.dtypes[f]!]!];
}

/** Whether fqn `f` of `a` and fqn `h` of `b` have the same dtype and global size. */
function sameTensor(a: SavePlanColumns, f: number, b: SavePlanColumns, h: number): boolean {
  if (a.dtypes[f] !== b.dtypes[h] || fqnNdim(a, f) !== fqnNdim(b, h)) return false;
  const as = a.shapeStarts[f]!;
  const bs = b.shapeStarts[h]!;
  for (let d = 0; d < fqnNdim(a, f); d++) if (a.shapes[as + d] !== b.shapes[bs + d]) return false;
  return true;
}

const describe = (c: SavePlanColumns, f: number) => `${DTYPES[c.dtypes[f]!]}[${fqnShape(c, f).join(", ")}]`;

/**
 * The coordinator's planning on columns, as `dedupSavePlans` → `createGlobalSavePlan` on
 * `WriteItem` objects, with the same results, order and errors: dedup of replicated items, each
 * kept tensor item's index hint (its chunk's position in its tensor's chunks), and the metadata
 * ({@link assembleSaveMetadata}). O(n) in items plus the metadata's own objects; no object per item.
 *
 * @param all - every rank's local plan as columns, in rank order.
 * @param plannerData - every rank's local plan's planner data (the same array for ranks that share it is merged once).
 * @param saveToLowestRank - give every replicated item to the lowest rank holding it.
 * @param deduped - {@link dedupSavePlanColumns}' result, when already made.
 * @throws {@link CheckpointError} `INVALID_PLAN` when a non-shard fqn appears twice, or chunks of
 * one fqn disagree on dtype or global size.
 */
export function createColumnarGlobalPlan(
  all: readonly SavePlanColumns[],
  plannerData: readonly (ReadonlyArray<readonly [string, ObjectPath]> | undefined)[],
  saveToLowestRank: boolean,
  deduped: DedupedColumns = dedupSavePlanColumns(all, saveToLowestRank),
): ColumnarGlobalPlan {
  const { fqns, maps, keep } = deduped;
  const G = fqns.length;
  const kinds = new Int8Array(G);
  const refPlans = new Int32Array(G);
  const refFqns = new Int32Array(G);
  const counts = new Int32Array(G);
  const order: number[] = [];
  const chunkIndexes = all.map((c, p) => {
    const map = maps[p]!;
    const kept = keep[p]!;
    const chunkIndex = new Int32Array(c.fqnIds.length).fill(-1);
    for (let i = 0; i < kept.length; i++) {
      if (!kept[i]) continue;
      const f = c.fqnIds[i]!;
      const g = map[f]!;
      const type = c.types[i]!;
      if (type !== 1 && kinds[g] !== 0) {
        throw new CheckpointError(
          "INVALID_PLAN",
          `Expected "${fqns[g]}" to be planned once, but it appears twice in the global plan`,
        );
      }
      if (type === 2) {
        kinds[g] = 1;
        order.push(g);
        continue;
      }
      if (kinds[g] === 0) {
        kinds[g] = 2;
        refPlans[g] = p;
        refFqns[g] = f;
        order.push(g);
      } else if (kinds[g] !== 2 || !sameTensor(all[refPlans[g]!]!, refFqns[g]!, c, f)) {
        const was = kinds[g] === 2 ? describe(all[refPlans[g]!]!, refFqns[g]!) : "a non-tensor value";
        throw new CheckpointError(
          "INVALID_PLAN",
          `Expected every chunk of "${fqns[g]}" to agree on dtype and global size: ${was} vs ${describe(c, f)}`,
        );
      }
      chunkIndex[i] = counts[g]!++;
    }
    return chunkIndex;
  });
  const chunkStarts = new Int32Array(G + 1);
  for (let g = 0; g < G; g++) chunkStarts[g + 1] = chunkStarts[g]! + counts[g]!;
  const chunkPlans = new Int32Array(chunkStarts[G]!);
  const chunkItems = new Int32Array(chunkStarts[G]!);
  all.forEach((c, p) => {
    const map = maps[p]!;
    const chunkIndex = chunkIndexes[p]!;
    for (let i = 0; i < chunkIndex.length; i++) {
      if (chunkIndex[i]! < 0) continue;
      const k = chunkStarts[map[c.fqnIds[i]!]!]! + chunkIndex[i]!;
      chunkPlans[k] = p;
      chunkItems[k] = i;
    }
  });
  const merged = mergePlannerData(plannerData);
  const entries: PlannedEntries = {
    columns: all,
    fqns,
    order: Int32Array.from(order),
    kinds,
    refPlans,
    refFqns,
    chunkStarts,
    chunkPlans,
    chunkItems,
  };
  const metadata = assembleSaveMetadata(entries, merged);
  const plans = all.map((c, p) => keptColumns(c, keep[p]!, chunkIndexes[p]!));
  return { plans, metadata, entries };
}

/**
 * Every plan's planner data in one map (later plans win), each distinct array merged once; a
 * single planner data made by {@link plannerDataView} is its map itself, not a copy.
 */
function mergePlannerData(
  plannerData: readonly (ReadonlyArray<readonly [string, ObjectPath]> | undefined)[],
): ReadonlyMap<string, ObjectPath> {
  const distinct: ReadonlyArray<readonly [string, ObjectPath]>[] = [];
  let previous: unknown;
  for (const data of plannerData) {
    if (data === undefined || data === previous) continue;
    distinct.push(data);
    previous = data;
  }
  const only = distinct.length === 1 ? plannerDataMappings(distinct[0]!) : undefined;
  if (only !== undefined) return only;
  const merged = new Map<string, ObjectPath>();
  for (const data of distinct) for (const [fqn, path] of data) merged.set(fqn, path);
  return merged;
}

/** The kept items of `c` with their index hints; the fqn table and box pool are shared. */
function keptColumns(c: SavePlanColumns, kept: Uint8Array, chunkIndex: Int32Array): SavePlanColumns {
  let n = 0;
  for (let i = 0; i < kept.length; i++) n += kept[i]!;
  if (n === kept.length) return { ...c, chunkIndex };
  const fqnIds = new Int32Array(n);
  const types = new Uint8Array(n);
  const boxStarts = new Int32Array(n);
  const hints = new Int32Array(n);
  let k = 0;
  for (let i = 0; i < kept.length; i++) {
    if (!kept[i]) continue;
    fqnIds[k] = c.fqnIds[i]!;
    types[k] = c.types[i]!;
    boxStarts[k] = c.boxStarts[i]!;
    hints[k++] = chunkIndex[i]!;
  }
  return { ...c, fqnIds, types, boxStarts, chunkIndex: hints };
}

/** One tensor's chunks, contiguous: chunk `i`'s offsets at `offsets[first + i · nd]`, its sizes likewise. */
interface TensorBoxes {
  readonly offsets: Float64Array;
  readonly sizes: Float64Array;
  readonly first: number;
  readonly count: number;
}

/**
 * Whether the chunks of `t`, in their order, are disjoint along dimension `d` alone (each starts
 * at or after the previous one's end, sizes ≥ 0): then no two overlap.
 */
function disjointAlong(t: TensorBoxes, nd: number, d: number): boolean {
  let end = Number.NEGATIVE_INFINITY;
  const last = t.first + t.count * nd;
  for (let at = t.first + d; at < last; at += nd) {
    const start = t.offsets[at]!;
    const size = t.sizes[at]!;
    if (!(start >= end) || !(size >= 0) || !Number.isFinite(start + size)) return false;
    end = start + size;
  }
  return true;
}

/** Chunks `k0..k1` of `entries` copied into `scratch` (grown when short), as one tensor's boxes. */
function gatherBoxes(
  entries: PlannedEntries,
  k0: number,
  k1: number,
  nd: number,
  scratch: { offsets: Float64Array; sizes: Float64Array },
): TensorBoxes {
  const need = (k1 - k0) * nd;
  if (scratch.offsets.length < need) {
    scratch.offsets = new Float64Array(Math.max(need, 2 * scratch.offsets.length));
    scratch.sizes = new Float64Array(scratch.offsets.length);
  }
  const { offsets, sizes } = scratch;
  let to = 0;
  for (let k = k0; k < k1; k++) {
    const c = entries.columns[entries.chunkPlans[k]!]!;
    const b = c.boxStarts[entries.chunkItems[k]!]!;
    for (let d = 0; d < nd; d++) {
      offsets[to + d] = c.boxes[b + d]!;
      sizes[to + d] = c.boxes[b + nd + d]!;
    }
    to += nd;
  }
  return { offsets, sizes, first: 0, count: k1 - k0 };
}

/** {@link validateColumnarGlobalPlan}'s checks of one tensor's chunks, its problems added to `problems`. */
function validateTensor(
  fqn: string,
  size: readonly number[],
  t: TensorBoxes,
  planCount: number,
  problems: string[],
): void {
  const nd = size.length;
  const box = (i: number) => {
    const at = t.first + i * nd;
    return {
      offsets: Array.from(t.offsets.subarray(at, at + nd)),
      sizes: Array.from(t.sizes.subarray(at, at + nd)),
    };
  };
  let disjoint = false;
  for (let d = 0; d < nd && !disjoint; d++) disjoint = disjointAlong(t, nd, d);
  const boxes = disjoint ? undefined : Array.from({ length: t.count }, (_, i) => box(i));
  const pairs = boxes ? overlappingPairs(boxes, nd) : [];
  let next = 0;
  let volume = 0;
  for (let i = 0; i < t.count; i++) {
    const at = t.first + i * nd;
    let inBounds = true;
    let n = 1;
    for (let d = 0; d < nd; d++) {
      const off = t.offsets[at + d]!;
      const len = t.sizes[at + d]!;
      if (!(off >= 0 && len >= 0 && off + len <= size[d]!)) inBounds = false;
      n *= len;
    }
    if (!inBounds) {
      const { offsets, sizes } = box(i);
      problems.push(
        `"${fqn}": chunk at [${offsets.join(", ")}] of size [${sizes.join(", ")}] is out of bounds [${size.join(", ")}]`,
      );
    }
    volume += n;
    for (; next < pairs.length && pairs[next]![0] === i; next++) {
      const other = boxes![pairs[next]![1]]!;
      problems.push(
        `"${fqn}": chunks at [${box(i).offsets.join(", ")}] and [${other.offsets.join(", ")}] overlap`,
      );
    }
  }
  let total = 1;
  for (const s of size) total *= s;
  if (planCount > 1 && volume !== total)
    problems.push(`"${fqn}": chunks cover ${volume} of ${total} elements`);
}

/**
 * Whether a tensor's one chunk `t` is the whole tensor (offsets 0, sizes its global size, at
 * `shapes[start..start + nd)`, each ≥ 0): valid without more checks, however many plans (the common case
 * of a rank's own unsharded tensor).
 */
function wholeTensorChunk(shapes: Float64Array, start: number, nd: number, t: TensorBoxes): boolean {
  for (let d = 0; d < nd; d++) {
    const size = shapes[start + d]!;
    if (!(size >= 0) || t.offsets[t.first + d] !== 0 || t.sizes[t.first + d] !== size) return false;
  }
  return true;
}

/**
 * `validateGlobalPlan` on the global plan's columns, with the same problems in the same order:
 * every chunk inside its tensor, no two chunks overlapping, and — with more than one plan — the
 * chunks' volumes adding up to the tensor's; bytes and 0-d entries skipped. A tensor whose chunks
 * are disjoint along one dimension in their order (FSDP's row shards) needs no sweep; others go
 * through `overlappingPairs` (DCP 2.13's sweep) on boxes made for that tensor alone. With the
 * global plan's columnar metadata, each tensor's chunks are read from its columns (contiguous),
 * else gathered from the plans.
 *
 * @param entries - the global plan's entries ({@link createColumnarGlobalPlan}'s `entries`).
 * @param planCount - the number of plans (ranks).
 * @param metadata - the metadata assembled from `entries` ({@link createColumnarGlobalPlan}'s `metadata`), when at hand.
 * @returns the problems, one message each; empty when valid.
 */
export function validateColumnarGlobalPlan(
  entries: PlannedEntries,
  planCount: number,
  metadata?: Metadata,
): string[] {
  const { columns, fqns, order, kinds, refPlans, refFqns, chunkStarts } = entries;
  const assembled = metadataColumns(metadata);
  const own = assembled && assembled.fqns.length === order.length ? assembled : undefined;
  const scratch = { offsets: new Float64Array(0), sizes: new Float64Array(0) };
  const problems: string[] = [];
  for (let e = 0; e < order.length; e++) {
    const g = order[e]!;
    if (kinds[g] !== 2) continue;
    const ref = columns[refPlans[g]!]!;
    const f = refFqns[g]!;
    const nd = fqnNdim(ref, f);
    if (nd === 0) continue;
    const k0 = chunkStarts[g]!;
    const k1 = chunkStarts[g + 1]!;
    const boxes: TensorBoxes = own
      ? { offsets: own.chunkOffsets, sizes: own.chunkSizes, first: own.entryChunkDim[e]!, count: k1 - k0 }
      : gatherBoxes(entries, k0, k1, nd, scratch);
    if (boxes.count === 1 && wholeTensorChunk(ref.shapes, ref.shapeStarts[f]!, nd, boxes)) continue;
    validateTensor(fqns[g]!, fqnShape(ref, f), boxes, planCount, problems);
  }
  return problems;
}
