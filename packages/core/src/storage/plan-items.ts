import { DTYPE_BYTES, DTYPES } from "../model/dtype.js";
import { numel } from "../model/tensor.js";
import type { WriteItem } from "../plan/metadata.js";
import type { SavePlanner } from "../plan/planner.js";
import { type SavePlanColumns, writeItemAt } from "../plan/save-plan-columns.js";

/**
 * A save plan's items as a writer reads them: by position, so that a plan over columns needs no
 * `WriteItem` object per item (one is made only where a format frames an item by it).
 */
export interface PlanItems {
  /** How many items. */
  readonly count: number;
  /** Whether item `j` is a bytes value (not a tensor or shard). */
  isBytes(j: number): boolean;
  /** Item `j`'s planned bytes: its chunk's elements × its dtype's size; 0 for a bytes value. */
  bytes(j: number): number;
  /** Item `j` as a {@link WriteItem}. */
  item(j: number): WriteItem;
  /** Item `j`'s bytes to store (`SavePlanner.resolveData`). */
  data(j: number): Uint8Array;
}

/** A write item's planned bytes: its chunk's elements × its dtype's size; 0 for a bytes item. */
export function plannedBytes(item: WriteItem): number {
  const td = item.tensorData;
  return td ? numel(td.chunk.sizes) * DTYPE_BYTES[td.properties.dtype] : 0;
}

/**
 * A plan of `WriteItem` objects as {@link PlanItems}.
 * @param items - the plan's items.
 * @param planner - resolves each item's bytes.
 */
export function objectPlanItems(items: readonly WriteItem[], planner: SavePlanner): PlanItems {
  return {
    count: items.length,
    isBytes: (j) => items[j]!.type === "bytes",
    bytes: (j) => plannedBytes(items[j]!),
    item: (j) => items[j]!,
    data: (j) => planner.resolveData(items[j]!),
  };
}

/**
 * A plan over columns as {@link PlanItems}: read by position; bytes resolved by position where the
 * planner can (`SavePlanner.resolveDataAt`), else through a `WriteItem` made for the call.
 * @param c - the plan's columns.
 * @param planner - resolves each item's bytes.
 */
export function columnPlanItems(c: SavePlanColumns, planner: SavePlanner): PlanItems {
  const byPosition = planner.resolveDataAt?.bind(planner);
  return {
    count: c.fqnIds.length,
    isBytes: (j) => c.types[j] === 2,
    bytes: (j) => {
      if (c.types[j] === 2) return 0;
      const f = c.fqnIds[j]!;
      const nd = c.shapeStarts[f + 1]! - c.shapeStarts[f]!;
      const b = c.boxStarts[j]! + nd;
      let n = 1;
      for (let d = 0; d < nd; d++) n *= c.boxes[b + d]!;
      return n * DTYPE_BYTES[DTYPES[c.dtypes[f]!]!];
    },
    item: (j) => writeItemAt(c, j),
    data: byPosition ? (j) => byPosition(c, j) : (j) => planner.resolveData(writeItemAt(c, j)),
  };
}

/**
 * Splits a plan's items into `bins` files by position, as DCP's `_split_by_size_and_type`: with
 * one bin, all items; otherwise bytes items go round-robin (`i % bins`) and tensors, largest
 * first (stable), each to the currently smallest bin. Inside every bin, bytes items come first.
 * Bins may be empty.
 *
 * @param bins - the number of files, ≥ 1.
 * @param items - the plan's items.
 * @returns exactly `bins` lists of positions.
 */
export function splitPositionsBySizeAndType(bins: number, items: PlanItems): number[][] {
  const bytesItems: number[] = [];
  const tensorItems: number[] = [];
  for (let j = 0; j < items.count; j++) (items.isBytes(j) ? bytesItems : tensorItems).push(j);
  if (bins === 1) return [bytesItems.concat(tensorItems)];
  const buckets: number[][] = Array.from({ length: bins }, () => []);
  const sizes = new Array<number>(bins).fill(0);
  bytesItems.forEach((j, i) => {
    buckets[i % bins]!.push(j);
  });
  const weight = new Float64Array(items.count);
  for (const j of tensorItems) weight[j] = items.bytes(j);
  const sorted = [...tensorItems].sort((a, b) => weight[b]! - weight[a]!);
  for (const j of sorted) {
    let smallest = 0;
    for (let b = 1; b < bins; b++) if (sizes[b]! < sizes[smallest]!) smallest = b;
    buckets[smallest]!.push(j);
    sizes[smallest]! += weight[j]!;
  }
  return buckets;
}
