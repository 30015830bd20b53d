import { CheckpointError } from "../errors.js";
import { DTYPES, type DType } from "../model/dtype.js";
import type { ObjectPath } from "../model/state-dict.js";
import { isShardedTensor, isTensor, validateTensor } from "../model/tensor.js";
import { isUnchangedLazyArray, lazyArray } from "./lazy-array.js";
import type { SavePlan, StoragePrefix, WriteItem, WriteItemType } from "./metadata.js";

/** Item kinds in {@link SavePlanColumns.types}, by code: `tensor` 0, `shard` 1, `bytes` 2. */
export const WRITE_ITEM_TYPES: readonly WriteItemType[] = ["tensor", "shard", "bytes"];
/** {@link SavePlanColumns.dtypes}' code of an fqn planned as a bytes value (no dtype). */
export const NO_DTYPE = 255;

/**
 * A save plan's write items as typed columns, fqns interned once: the engine's working form of a
 * {@link SavePlan} (what the default planner makes, what crosses the wire, what the coordinator
 * deduplicates and plans on). Per fqn (its id = its position in `fqns`): the dtype and the global
 * size; per item: its fqn id, kind and box (chunk offsets then sizes, as many of each as its
 * fqn's global size has dimensions; none for a bytes item).
 */
export interface SavePlanColumns {
  /** The fqns the items name, each once. */
  readonly fqns: readonly string[];
  /** Per fqn: its dtype's position in {@link DTYPES}, or {@link NO_DTYPE} for a bytes value. */
  readonly dtypes: Uint8Array;
  /** Per fqn, and one more: where its global size starts in `shapes` (its dims: to the next start). */
  readonly shapeStarts: Int32Array;
  /** Every fqn's global size, one after another (elements per dimension). */
  readonly shapes: Float64Array;
  /** Per item: its fqn id. */
  readonly fqnIds: Int32Array;
  /** Per item: its kind's position in {@link WRITE_ITEM_TYPES}. */
  readonly types: Uint8Array;
  /** Per item: where its chunk offsets start in `boxes` (its sizes follow them). */
  readonly boxStarts: Int32Array;
  /** Every item's chunk offsets and sizes, one after another (elements per dimension). */
  readonly boxes: Float64Array;
  /** Per item, after the global plan: its chunk's position in the tensor's chunks (the index hint); -1 for none. */
  readonly chunkIndex?: Int32Array;
}

/** Dimensions of fqn `f`'s global size in `c`. */
export function fqnNdim(c: SavePlanColumns, f: number): number {
  return c.shapeStarts[f + 1]! - c.shapeStarts[f]!;
}

/** Fqn `f`'s global size in `c`, as an array. */
export function fqnShape(c: SavePlanColumns, f: number): number[] {
  return Array.from(c.shapes.subarray(c.shapeStarts[f]!, c.shapeStarts[f + 1]!));
}

/** Item `i`'s box dimensions in `c` (0 for a bytes item). */
export function itemNdim(c: SavePlanColumns, i: number): number {
  return c.types[i] === 2 ? 0 : fqnNdim(c, c.fqnIds[i]!);
}

/**
 * Item `i` of `c` as a {@link WriteItem} object (fresh arrays each call), as
 * {@link createWriteItems} makes it, with the index hint when `c` has one.
 *
 * @param c - the columns.
 * @param i - the item's position.
 */
export function writeItemAt(c: SavePlanColumns, i: number): WriteItem {
  const f = c.fqnIds[i]!;
  const fqn = c.fqns[f]!;
  const type = WRITE_ITEM_TYPES[c.types[i]!]!;
  const hint = c.chunkIndex?.[i] ?? -1;
  if (type === "bytes") return { index: { fqn, offset: null }, type };
  const nd = fqnNdim(c, f);
  const b = c.boxStarts[i]!;
  const s = c.shapeStarts[f]!;
  const offsets = new Array<number>(nd);
  const chunkOffsets = new Array<number>(nd);
  const sizes = new Array<number>(nd);
  const size = new Array<number>(nd);
  for (let d = 0; d < nd; d++) {
    offsets[d] = chunkOffsets[d] = c.boxes[b + d]!;
    sizes[d] = c.boxes[b + nd + d]!;
    size[d] = c.shapes[s + d]!;
  }
  return {
    index: hint >= 0 ? { fqn, offset: offsets, index: hint } : { fqn, offset: offsets },
    type,
    tensorData: {
      chunk: { offsets: chunkOffsets, sizes },
      properties: { dtype: DTYPES[c.dtypes[f]!]! },
      size,
    },
  };
}

/** The columns behind each columnar plan's `items` array. */
const columnsOf = new WeakMap<readonly WriteItem[], SavePlanColumns>();

/**
 * A {@link SavePlan} over columns: its `items` are made from them on first use
 * ({@link lazyArray}), so callers and custom planners see `WriteItem` objects, while
 * {@link savePlanColumns} gives the engine the columns — also of a copy (`{ ...plan, storageData }`
 * keeps the same `items`), and until someone writes to `items`.
 *
 * @param columns - the items.
 * @param extra - the plan's planner data and storage data.
 */
export function columnarSavePlan(
  columns: SavePlanColumns,
  extra: { readonly plannerData?: Array<[string, ObjectPath]>; readonly storageData?: StoragePrefix } = {},
): SavePlan {
  const items = lazyArray(columns.fqnIds.length, (i) => writeItemAt(columns, i));
  columnsOf.set(items, columns);
  return { items, ...extra };
}

/**
 * The columns of a plan made by {@link columnarSavePlan}, or `undefined` for a plan of plain
 * `WriteItem` objects or one whose `items` were written to since.
 *
 * @param plan - any save plan.
 */
export function savePlanColumns(plan: SavePlan): SavePlanColumns | undefined {
  const columns = columnsOf.get(plan.items);
  return columns !== undefined && isUnchangedLazyArray(plan.items) ? columns : undefined;
}

/** Grows a Float64Array column as it is filled. */
class Float64Column {
  values = new Float64Array(64);
  length = 0;
  push(x: number): void {
    if (this.length === this.values.length) {
      const grown = new Float64Array(this.values.length * 2);
      grown.set(this.values);
      this.values = grown;
    }
    this.values[this.length++] = x;
  }
  pushAll(xs: readonly number[]): void {
    for (const x of xs) this.push(x);
  }
  done(): Float64Array {
    return this.values.slice(0, this.length);
  }
}

/**
 * Builds one rank's write items as columns from a flattened state dict, as DCP's
 * `create_default_local_save_plan` / `_create_write_items`: a tensor is one `tensor` item at
 * offsets 0, each chunk of a sharded tensor is a `shard` item at its offsets, and every other
 * value is one `bytes` item.
 *
 * @param flat - fqn → leaf (from `flattenStateDict`).
 * @returns the items, in state-dict order.
 * @throws {@link CheckpointError} `INVALID_STATE_DICT` for a malformed tensor or shard.
 */
export function createWriteColumns(flat: ReadonlyMap<string, unknown>): SavePlanColumns {
  const fqns: string[] = [];
  const dtypes: number[] = [];
  const shapeStarts: number[] = [0];
  const shapes = new Float64Column();
  const fqnIds: number[] = [];
  const types: number[] = [];
  const boxStarts: number[] = [];
  const boxes = new Float64Column();
  const addFqn = (fqn: string, dtype: DType | undefined, shape: readonly number[]) => {
    fqns.push(fqn);
    dtypes.push(dtype === undefined ? NO_DTYPE : DTYPES.indexOf(dtype));
    shapes.pushAll(shape);
    shapeStarts.push(shapes.length);
    return fqns.length - 1;
  };
  const addItem = (f: number, type: number, offsets: readonly number[], sizes: readonly number[]) => {
    fqnIds.push(f);
    types.push(type);
    boxStarts.push(boxes.length);
    boxes.pushAll(offsets);
    boxes.pushAll(sizes);
  };
  for (const [fqn, obj] of flat) {
    if (isTensor(obj)) {
      validateTensor(obj, `"${fqn}"`);
      const f = addFqn(fqn, obj.dtype, obj.shape);
      addItem(
        f,
        0,
        obj.shape.map(() => 0),
        obj.shape,
      );
    } else if (isShardedTensor(obj)) {
      let f = -1;
      for (const [i, shard] of obj.shards.entries()) {
        const what = `shard ${i} of "${fqn}"`;
        validateTensor(shard.tensor, what);
        if (
          shard.tensor.dtype !== obj.dtype ||
          shard.offsets.length !== obj.shape.length ||
          shard.tensor.shape.length !== obj.shape.length
        ) {
          throw new CheckpointError(
            "INVALID_STATE_DICT",
            `Expected ${what} to be ${obj.dtype} with ${obj.shape.length} dims like its sharded tensor, got ${shard.tensor.dtype} at offsets [${shard.offsets.join(", ")}] with shape [${shard.tensor.shape.join(", ")}]`,
          );
        }
        if (f < 0) f = addFqn(fqn, obj.dtype, obj.shape);
        addItem(f, 1, shard.offsets, shard.tensor.shape);
      }
    } else {
      addItem(addFqn(fqn, undefined, []), 2, [], []);
    }
  }
  return {
    fqns,
    dtypes: Uint8Array.from(dtypes),
    shapeStarts: Int32Array.from(shapeStarts),
    shapes: shapes.done(),
    fqnIds: Int32Array.from(fqnIds),
    types: Uint8Array.from(types),
    boxStarts: Int32Array.from(boxStarts),
    boxes: boxes.done(),
  };
}
