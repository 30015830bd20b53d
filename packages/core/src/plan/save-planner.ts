import { CheckpointError } from "../errors.js";
import { DTYPE_BYTES } from "../model/dtype.js";
import { boxesOverlap, findChunk, offsetKey, overlappingPairs, sameShape } from "../model/geometry.js";
import { flattenStateDict, type ObjectPath, type StateDict } from "../model/state-dict.js";
import { isShardedTensor, numel, type Tensor, tensorBytes } from "../model/tensor.js";
import { encodeValue } from "../model/value-codec.js";
import { DCP_VERSION } from "./assemble-metadata.js";
import { createColumnarGlobalPlan, validateColumnarGlobalPlan } from "./columnar-global-plan.js";
import { dedupOwners } from "./dedup-owners.js";
import type {
  ChunkStorageMetadata,
  Metadata,
  SavePlan,
  StorageMetadataEntry,
  TensorStorageMetadata,
  WriteItem,
} from "./metadata.js";
import type { SavePlanner } from "./planner.js";
import {
  columnarSavePlan,
  createWriteColumns,
  plannerDataView,
  type SavePlanColumns,
  savePlanColumns,
  writeItemAt,
} from "./save-plan-columns.js";

export { DCP_VERSION } from "./assemble-metadata.js";

/**
 * Bytes a write item occupies by DCP's accounting (`WriteItem.tensor_storage_size`): the global
 * tensor's element count × element size, or `undefined` for a bytes item.
 *
 * @param item - the item.
 */
export function tensorStorageSize(item: WriteItem): number | undefined {
  if (!item.tensorData) return undefined;
  return numel(item.tensorData.size) * DTYPE_BYTES[item.tensorData.properties.dtype];
}

/**
 * Builds one rank's write items from a flattened state dict, as DCP's
 * `create_default_local_save_plan` / `_create_write_items`: a tensor is one `tensor` item at
 * offsets 0, each chunk of a sharded tensor is a `shard` item at its offsets, and every other
 * value is one `bytes` item.
 *
 * @param flat - fqn → leaf (from {@link flattenStateDict}).
 * @returns the items, in state-dict order.
 * @throws {@link CheckpointError} `INVALID_STATE_DICT` for a malformed tensor or shard.
 */
export function createWriteItems(flat: ReadonlyMap<string, unknown>): WriteItem[] {
  const columns = createWriteColumns(flat);
  return Array.from({ length: columns.fqnIds.length }, (_, i) => writeItemAt(columns, i));
}

/**
 * Removes replicated items so each is written by exactly one rank, as DCP's `dedup_save_plans`:
 * items are visited in first-appearance order (plans 0..n, items in order); each goes to the
 * plan, among those holding it, with the smallest planned size so far (ties → lowest rank), or
 * always to the lowest rank when `saveToLowestRank`. A bytes item counts 1 byte, a tensor its
 * {@link tensorStorageSize} (at least 1). The number of plans is unchanged. Linear in items:
 * each is looked up once by fqn and offsets, its holders kept in typed columns.
 *
 * @param allPlans - one local plan per rank.
 * @param saveToLowestRank - give every replicated item to the lowest rank holding it.
 * @returns new plans holding the kept items, in their original order.
 */
export function dedupSavePlans(allPlans: readonly SavePlan[], saveToLowestRank = false): SavePlan[] {
  if (allPlans.length === 1) return [{ ...allPlans[0]! }]; // one rank: nothing is replicated
  // Number every distinct item in first-appearance order; typed columns, not an object per item.
  // By fqn, then by offsets (as metadataIndexKey, without building one long key per item).
  const ids = new Map<string, Map<string, number>>();
  let distinct = 0;
  const itemIds = allPlans.map((plan) => {
    const column = new Int32Array(plan.items.length);
    plan.items.forEach((item, i) => {
      const { fqn, offset } = item.index;
      let byOffset = ids.get(fqn);
      if (byOffset === undefined) {
        byOffset = new Map();
        ids.set(fqn, byOffset);
      }
      const key = offset === null ? "" : offsetKey(offset); // null and [] are one key, as in metadataIndexKey
      let id = byOffset.get(key);
      if (id === undefined) {
        id = distinct++;
        byOffset.set(key, id);
      }
      column[i] = id;
    });
    return column;
  });
  ids.clear();
  // The first holder's item of each distinct item: its bytes count toward the choice.
  const first: WriteItem[] = new Array(distinct);
  itemIds.forEach((column, p) => {
    column.forEach((id, i) => {
      first[id] ??= allPlans[p]!.items[i]!;
    });
  });
  const owner = dedupOwners(itemIds, distinct, saveToLowestRank, (id) => tensorStorageSize(first[id]!) ?? 0);
  return allPlans.map((plan, p) => {
    const column = itemIds[p]!;
    return { ...plan, items: plan.items.filter((_, i) => owner[column[i]!] === p) };
  });
}

/**
 * Builds the global metadata from deduplicated plans, as DCP's `create_default_global_save_plan`
 * with index-hint rewrite: each tensor item's `index.index` becomes its chunk's position in
 * {@link TensorStorageMetadata.chunks}.
 *
 * @param allPlans - deduplicated plans, one per rank.
 * @returns plans with rewritten hints and the metadata (empty storage data, no planner data).
 * @throws {@link CheckpointError} `INVALID_PLAN` when a non-shard fqn appears twice, or chunks of
 * one fqn disagree on dtype or global size.
 */
export function createGlobalSavePlan(allPlans: readonly SavePlan[]): {
  plans: SavePlan[];
  metadata: Metadata;
} {
  const md = new Map<string, StorageMetadataEntry>();
  const plans = allPlans.map((plan) => {
    const items = plan.items.map((item): WriteItem => {
      const { fqn } = item.index;
      const existing = md.get(fqn);
      if (item.type !== "shard" && existing) {
        throw new CheckpointError(
          "INVALID_PLAN",
          `Expected "${fqn}" to be planned once, but it appears twice in the global plan`,
        );
      }
      if (item.type === "bytes") {
        md.set(fqn, { type: "bytes" });
        return item;
      }
      const td = item.tensorData!;
      let entry = existing;
      if (!entry) {
        entry = { type: "tensor", properties: { ...td.properties }, size: [...td.size], chunks: [] };
        md.set(fqn, entry);
      } else if (
        entry.type !== "tensor" ||
        entry.properties.dtype !== td.properties.dtype ||
        !sameShape(entry.size, td.size)
      ) {
        const was =
          entry.type === "tensor"
            ? `${entry.properties.dtype}[${entry.size.join(", ")}]`
            : "a non-tensor value";
        throw new CheckpointError(
          "INVALID_PLAN",
          `Expected every chunk of "${fqn}" to agree on dtype and global size: ${was} vs ${td.properties.dtype}[${td.size.join(", ")}]`,
        );
      }
      const index = entry.chunks.length;
      entry.chunks.push(td.chunk);
      return { ...item, index: { ...item.index, index } };
    });
    return { ...plan, items };
  });
  const metadata: Metadata = {
    version: DCP_VERSION,
    stateDictMetadata: md,
    plannerData: new Map(),
    storageData: new Map(),
    storageMeta: {},
  };
  return { plans, metadata };
}

/**
 * Whether two chunks overlap, as DCP's `_check_box_overlap` (disjoint when separated along any dim).
 *
 * @param a - one chunk.
 * @param b - the other, of the same rank.
 */
export function chunksOverlap(a: ChunkStorageMetadata, b: ChunkStorageMetadata): boolean {
  return boxesOverlap(a, b);
}

/**
 * Checks the global plan's tensors, as DCP's `_validate_global_plan`: every chunk lies inside
 * its tensor, no two chunks overlap, and — when there is more than one plan — the chunks' volumes
 * add up to the tensor's. Bytes and 0-d entries are skipped. Overlaps are found by a sweep along
 * the sharded dimension ({@link overlappingPairs}, as DCP 2.13), O(n log n) in a tensor's chunks
 * when they are sharded along one dimension, and reported in the order comparing every pair
 * would report them.
 *
 * @param planCount - the number of plans (ranks).
 * @param metadata - the global metadata.
 * @returns the problems found, one message each; empty when valid.
 */
export function validateGlobalPlan(planCount: number, metadata: Metadata): string[] {
  const problems: string[] = [];
  for (const [fqn, entry] of metadata.stateDictMetadata) {
    if (entry.type !== "tensor" || entry.size.length === 0) continue;
    let volume = 0;
    // Overlaps by a sweep (O(n log n) in chunks), reported in the order comparing every pair would.
    const pairs = overlappingPairs(entry.chunks, entry.size.length);
    let next = 0;
    entry.chunks.forEach((chunk, i) => {
      const inBounds = chunk.offsets.every(
        (off, d) => off >= 0 && chunk.sizes[d]! >= 0 && off + chunk.sizes[d]! <= entry.size[d]!,
      );
      if (!inBounds || chunk.offsets.length !== entry.size.length) {
        problems.push(
          `"${fqn}": chunk at [${chunk.offsets.join(", ")}] of size [${chunk.sizes.join(", ")}] is out of bounds [${entry.size.join(", ")}]`,
        );
      }
      volume += numel(chunk.sizes);
      for (; next < pairs.length && pairs[next]![0] === i; next++) {
        const other = entry.chunks[pairs[next]![1]]!;
        problems.push(
          `"${fqn}": chunks at [${chunk.offsets.join(", ")}] and [${other.offsets.join(", ")}] overlap`,
        );
      }
    });
    if (planCount > 1 && volume !== numel(entry.size)) {
      problems.push(`"${fqn}": chunks cover ${volume} of ${numel(entry.size)} elements`);
    }
  }
  return problems;
}

/** Options of {@link DefaultSavePlanner}. */
export interface DefaultSavePlannerOptions {
  /** Give replicated items to the lowest rank instead of the least-loaded one. @default false */
  readonly saveToLowestRank?: boolean;
  /**
   * Reuse the last save's global plan over the same process group when every rank's local plan
   * is unchanged ({@link DefaultSavePlanner.planCacheKey}), as DCP's `enable_plan_caching` (which
   * is off by default there; here on: the cache is validated by every rank's plan hash).
   * @default true
   */
  readonly planCaching?: boolean;
}

/**
 * DCP's `DefaultSavePlanner`: flattens the state dict, plans one item per tensor, shard and
 * value, deduplicates replicated items across ranks, validates the global plan and keeps the
 * flatten mappings as planner data.
 */
export class DefaultSavePlanner implements SavePlanner {
  readonly #options: DefaultSavePlannerOptions;
  #flat = new Map<string, unknown>();
  #mappings = new Map<string, ObjectPath>();
  #encoded = new Map<string, Uint8Array>();

  /** @param options - see {@link DefaultSavePlannerOptions}. */
  constructor(options: DefaultSavePlannerOptions = {}) {
    this.#options = options;
  }

  /** @inheritDoc */
  setUpPlanner(stateDict: StateDict): void {
    // An empty object in a list would save nothing and leave the list unrebuildable: refused.
    const { flat, mappings } = flattenStateDict(stateDict, { refuseEmptyInLists: true });
    this.#flat = flat;
    this.#mappings = mappings;
    this.#encoded.clear();
  }

  /** @inheritDoc */
  createLocalPlan(): SavePlan {
    // Columns: the items are WriteItem objects only for those who read them.
    return columnarSavePlan(createWriteColumns(this.#flat), { plannerData: plannerDataView(this.#mappings) });
  }

  /**
   * @inheritDoc
   * @throws {@link CheckpointError} `INVALID_PLAN` when the plan fails {@link validateGlobalPlan}.
   */
  createGlobalPlan(allPlans: SavePlan[]): { plans: SavePlan[]; metadata: Metadata } {
    const columns = allPlans.map(savePlanColumns);
    if (columns.every((c) => c !== undefined)) return this.#createColumnarGlobalPlan(allPlans, columns);
    const deduped = dedupSavePlans(allPlans, this.#options.saveToLowestRank ?? false);
    const global = createGlobalSavePlan(deduped);
    const plannerData = new Map(global.metadata.plannerData);
    for (const plan of allPlans) for (const [fqn, path] of plan.plannerData ?? []) plannerData.set(fqn, path);
    const { plans } = global;
    const metadata: Metadata = { ...global.metadata, plannerData };
    const problems = validateGlobalPlan(allPlans.length, metadata);
    if (problems.length > 0) {
      throw new CheckpointError("INVALID_PLAN", `Failed to validate global plan: ${problems.join("; ")}`);
    }
    return { plans: plans.map(({ plannerData: _, ...rest }) => rest), metadata };
  }

  /** {@link createGlobalPlan} on plans that all have columns: the same results, no object per item. */
  #createColumnarGlobalPlan(
    allPlans: readonly SavePlan[],
    columns: readonly SavePlanColumns[],
  ): { plans: SavePlan[]; metadata: Metadata } {
    const global = createColumnarGlobalPlan(
      columns,
      allPlans.map((p) => p.plannerData),
      this.#options.saveToLowestRank ?? false,
    );
    const problems = validateColumnarGlobalPlan(global.entries, allPlans.length, global.metadata);
    if (problems.length > 0) {
      throw new CheckpointError("INVALID_PLAN", `Failed to validate global plan: ${problems.join("; ")}`);
    }
    const plans = global.plans.map((c, p) => {
      const storageData = allPlans[p]!.storageData;
      return columnarSavePlan(c, storageData ? { storageData } : {});
    });
    return { plans, metadata: global.metadata };
  }

  /**
   * @inheritDoc
   * @returns the planner's class name and `saveToLowestRank` (its global plan depends on nothing
   * else), or `undefined` with `planCaching: false`.
   */
  planCacheKey(): string | undefined {
    if (this.#options.planCaching === false) return undefined;
    return `${this.constructor.name}:${this.#options.saveToLowestRank ?? false}`;
  }

  /**
   * @inheritDoc
   * @returns `plan` itself: a plan over columns keeps its lazy `items`, so that a writer reads
   * its columns by index ({@link savePlanColumns}) and no `WriteItem` is made for an item unless
   * someone reads `items`.
   */
  finishPlan(plan: SavePlan): SavePlan {
    return plan;
  }

  /** @inheritDoc */
  resolveData(item: WriteItem): Uint8Array {
    if (item.type === "bytes") return this.#valueBytes(item.index.fqn);
    const obj = this.#flat.get(item.index.fqn);
    if (item.type === "tensor") return tensorBytes(obj as Tensor);
    if (!isShardedTensor(obj)) {
      throw new CheckpointError(
        "INVALID_STATE_DICT",
        `Expected "${item.index.fqn}" to still be a sharded tensor while saving`,
      );
    }
    const shard = findChunk(obj.shards, item.index.offset!);
    if (!shard) {
      throw new CheckpointError(
        "INVALID_STATE_DICT",
        `Expected a shard of "${item.index.fqn}" at [${item.index.offset!.join(", ")}] while saving`,
      );
    }
    return tensorBytes(shard.tensor);
  }

  /**
   * @inheritDoc A tensor's or a value's bytes are found by its fqn alone; a shard's (or any item's,
   * when a subclass overrides {@link DefaultSavePlanner.resolveData}) through `resolveData` with
   * the item made from the columns.
   */
  resolveDataAt(columns: SavePlanColumns, item: number): Uint8Array {
    if (this.resolveData === DefaultSavePlanner.prototype.resolveData) {
      const type = columns.types[item];
      if (type === 0) return tensorBytes(this.#flat.get(columns.fqns[columns.fqnIds[item]!]!) as Tensor);
      if (type === 2) return this.#valueBytes(columns.fqns[columns.fqnIds[item]!]!);
    }
    return this.resolveData(writeItemAt(columns, item));
  }

  /** A bytes item's encoded value, encoded once per setUpPlanner. */
  #valueBytes(fqn: string): Uint8Array {
    let bytes = this.#encoded.get(fqn);
    if (!bytes) {
      bytes = encodeValue(this.#flat.get(fqn), fqn);
      this.#encoded.set(fqn, bytes);
    }
    return bytes;
  }
}
