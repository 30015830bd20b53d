import { CheckpointError } from "../errors.js";
import { DTYPE_BYTES, DTYPES } from "../model/dtype.js";
import type { ObjectPath } from "../model/state-dict.js";
import { isShardedTensor, isTensor, type Tensor, validateTensor } from "../model/tensor.js";
import { isUnchangedLazyArray, lazyArray, lazyArrayFilled } from "./lazy-array.js";
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

/** Fqn tables made by {@link createWriteColumns} (from a map's keys): no fqn twice. */
const distinctFqnTables = new WeakSet<readonly string[]>();

/**
 * Whether `fqns` is known to name no fqn twice (a table {@link createWriteColumns} made); `false`
 * says only that it was not checked.
 *
 * @param fqns - a {@link SavePlanColumns.fqns} table.
 */
export function hasDistinctFqns(fqns: readonly string[]): boolean {
  return distinctFqnTables.has(fqns);
}

/** The flatten mappings behind each {@link plannerDataView}. */
const mappingsOf = new WeakMap<readonly unknown[], ReadonlyMap<string, ObjectPath>>();

/**
 * A local plan's `plannerData` (`[fqn, path]` pairs) as a view of the planner's flatten mappings:
 * the pairs are made on first use ({@link lazyArrayFilled}), and {@link plannerDataMappings} gives
 * the coordinator the map itself until someone writes to the array.
 *
 * @param mappings - fqn → path in the state dict (not changed afterwards).
 */
export function plannerDataView(mappings: ReadonlyMap<string, ObjectPath>): Array<[string, ObjectPath]> {
  const data = lazyArrayFilled<[string, ObjectPath]>(mappings.size, (target) => {
    let i = 0;
    for (const entry of mappings) target[i++] = entry;
  });
  mappingsOf.set(data, mappings);
  return data;
}

/**
 * The mappings behind a {@link plannerDataView} nobody has written to, or `undefined` for any
 * other planner data.
 *
 * @param data - a plan's `plannerData`.
 */
export function plannerDataMappings(
  data: ReadonlyArray<readonly [string, ObjectPath]>,
): ReadonlyMap<string, ObjectPath> | undefined {
  const mappings = mappingsOf.get(data);
  return mappings !== undefined && isUnchangedLazyArray(data) ? mappings : undefined;
}

/** A typed array constructor a {@link Column} grows. */
type ColumnArray = Float64Array | Int32Array | Uint8Array;

/** Grows a typed column as it is filled (doubling), then hands over its filled part. */
class Column<A extends ColumnArray> {
  values: A;
  length = 0;
  readonly #make: (n: number) => A;
  constructor(make: (n: number) => A, capacity = 64) {
    this.#make = make;
    this.values = make(Math.max(capacity, 16));
  }
  /** Room for `n` more values. */
  reserve(n: number): void {
    if (this.length + n <= this.values.length) return;
    let size = this.values.length * 2;
    while (size < this.length + n) size *= 2;
    const grown = this.#make(size);
    grown.set(this.values);
    this.values = grown;
  }
  push(x: number): void {
    if (this.length === this.values.length) this.reserve(1);
    this.values[this.length++] = x;
  }
  pushAll(xs: readonly number[]): void {
    this.reserve(xs.length);
    for (let i = 0; i < xs.length; i++) this.values[this.length++] = xs[i]!;
  }
  pushZeros(n: number): void {
    this.reserve(n);
    this.values.fill(0, this.length, this.length + n);
    this.length += n;
  }
  done(): A {
    return this.values.slice(0, this.length) as A;
  }
}

/** Each dtype's code in {@link SavePlanColumns.dtypes} (its position in {@link DTYPES}). */
const DTYPE_CODES: ReadonlyMap<string, number> = new Map(DTYPES.map((d, i) => [d, i]));

/**
 * Whether `t` is well-formed as `validateTensor` checks it (known dtype, a shape of non-negative
 * safe integers, `numel × element size` bytes), without building its name: the caller builds the
 * name and calls `validateTensor` for its error only when this says no.
 */
function wellFormed(t: Tensor): boolean {
  const bytes = DTYPE_CODES.has(t.dtype) ? DTYPE_BYTES[t.dtype] : undefined;
  if (bytes === undefined) return false;
  let n = bytes;
  for (let d = 0; d < t.shape.length; d++) {
    const x = t.shape[d]!;
    if (!Number.isSafeInteger(x) || x < 0) return false;
    n *= x;
  }
  return t.data.byteLength === n;
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
  const count = flat.size;
  const fqns: string[] = [];
  const dtypes = new Column((n) => new Uint8Array(n), count);
  const shapeStarts = new Column((n) => new Int32Array(n), count + 1);
  const shapes = new Column((n) => new Float64Array(n), count);
  const fqnIds = new Column((n) => new Int32Array(n), count);
  const types = new Column((n) => new Uint8Array(n), count);
  const boxStarts = new Column((n) => new Int32Array(n), count);
  const boxes = new Column((n) => new Float64Array(n), 2 * count);
  shapeStarts.push(0);
  const addFqn = (fqn: string, dtype: number, shape: readonly number[]) => {
    fqns.push(fqn);
    dtypes.push(dtype);
    shapes.pushAll(shape);
    shapeStarts.push(shapes.length);
    return fqns.length - 1;
  };
  const addItem = (f: number, type: number) => {
    fqnIds.push(f);
    types.push(type);
    boxStarts.push(boxes.length);
  };
  // forEach, not for…of: no [fqn, leaf] pair made per entry.
  flat.forEach((obj, fqn) => {
    if (isTensor(obj)) {
      if (!wellFormed(obj)) validateTensor(obj, `"${fqn}"`);
      addItem(addFqn(fqn, DTYPE_CODES.get(obj.dtype)!, obj.shape), 0);
      boxes.pushZeros(obj.shape.length);
      boxes.pushAll(obj.shape);
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
        if (f < 0) f = addFqn(fqn, DTYPES.indexOf(obj.dtype), obj.shape);
        addItem(f, 1);
        boxes.pushAll(shard.offsets);
        boxes.pushAll(shard.tensor.shape);
      }
    } else {
      addItem(addFqn(fqn, NO_DTYPE, []), 2);
    }
  });
  distinctFqnTables.add(fqns);
  return {
    fqns,
    dtypes: dtypes.done(),
    shapeStarts: shapeStarts.done(),
    shapes: shapes.done(),
    fqnIds: fqnIds.done(),
    types: types.done(),
    boxStarts: boxStarts.done(),
    boxes: boxes.done(),
  };
}
