import { CheckpointError } from "../errors.js";
import { DTYPES } from "../model/dtype.js";
import type { ObjectPath } from "../model/state-dict.js";
import type { SavePlan, StoragePrefix } from "./metadata.js";
import {
  columnarSavePlan,
  itemNdim,
  NO_DTYPE,
  type SavePlanColumns,
  savePlanColumns,
  WRITE_ITEM_TYPES,
} from "./save-plan-columns.js";

/** "DSP1" little-endian: the first four bytes of an encoded save plan. */
const MAGIC = 0x31505344;
const HEADER_WORDS = 12;
const BOXES_INT32 = 1;
const SHAPES_INT32 = 2;
const HAS_CHUNK_INDEX = 4;
const HAS_PLANNER_DATA = 8;
const HAS_STORAGE_DATA = 16;

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

const align8 = (n: number) => (n + 7) & ~7;

/** Whether every value is an int32 (so the column travels in 4 bytes a value). */
function allInt32(values: Float64Array): boolean {
  for (let i = 0; i < values.length; i++)
    if ((values[i]! | 0) !== values[i] || Object.is(values[i], -0)) return false;
  return true;
}

/** The items' boxes one after another in item order (the columns may share a larger pool with gaps). */
function compactBoxes(c: SavePlanColumns): Float64Array {
  const n = c.fqnIds.length;
  let total = 0;
  let contiguous = true;
  for (let i = 0; i < n; i++) {
    if (c.boxStarts[i] !== total) contiguous = false;
    total += 2 * itemNdim(c, i);
  }
  if (contiguous) return total === c.boxes.length ? c.boxes : c.boxes.subarray(0, total);
  const out = new Float64Array(total);
  let at = 0;
  for (let i = 0; i < n; i++) {
    const len = 2 * itemNdim(c, i);
    out.set(c.boxes.subarray(c.boxStarts[i]!, c.boxStarts[i]! + len), at);
    at += len;
  }
  return out;
}

/**
 * Encodes a save plan over columns ({@link columnarSavePlan}) as one compact binary: a header,
 * the fqns, planner data and storage data as JSON, then the typed columns, each at an 8-byte
 * boundary (boxes and global sizes in 4 bytes a value when they are all int32). What the save's
 * `plan` step sends over a process group that copies values, and what a plan's cache hash is
 * taken of (so equal plans encode to equal bytes).
 *
 * @param plan - a plan with columns.
 * @returns the bytes; {@link decodeSavePlan} reads them.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when the plan has no columns (plain `WriteItem` objects).
 */
export function encodeSavePlan(plan: SavePlan): Uint8Array {
  const c = savePlanColumns(plan);
  if (c === undefined)
    throw new CheckpointError("INVALID_ARGUMENT", "Expected a save plan over columns, got plain write items");
  const n = c.fqnIds.length;
  const boxes = compactBoxes(c);
  const boxesInt32 = allInt32(boxes);
  const shapesInt32 = allInt32(c.shapes);
  const fqnJson = utf8.encode(JSON.stringify(c.fqns));
  const plannerJson = plan.plannerData
    ? utf8.encode(JSON.stringify(compactPlannerData(plan.plannerData, c.fqns)))
    : new Uint8Array(0);
  const storageJson = plan.storageData ? utf8.encode(JSON.stringify(plan.storageData)) : new Uint8Array(0);
  const nf = c.fqns.length;
  const layout = sectionLayout(
    nf,
    n,
    c.shapes.length,
    boxes.length,
    fqnJson.length,
    plannerJson.length,
    storageJson.length,
    boxesInt32,
    shapesInt32,
    c.chunkIndex !== undefined,
  );
  const out = new Uint8Array(layout.total);
  const header = new Uint32Array(out.buffer, 0, HEADER_WORDS);
  header.set([
    MAGIC,
    (boxesInt32 ? BOXES_INT32 : 0) |
      (shapesInt32 ? SHAPES_INT32 : 0) |
      (c.chunkIndex ? HAS_CHUNK_INDEX : 0) |
      (plan.plannerData ? HAS_PLANNER_DATA : 0) |
      (plan.storageData ? HAS_STORAGE_DATA : 0),
    nf,
    n,
    c.shapes.length,
    boxes.length,
    fqnJson.length,
    plannerJson.length,
    storageJson.length,
  ]);
  out.set(fqnJson, layout.fqnJson);
  out.set(plannerJson, layout.plannerJson);
  out.set(storageJson, layout.storageJson);
  out.set(c.dtypes, layout.dtypes);
  new Int32Array(out.buffer, layout.shapeStarts, nf + 1).set(c.shapeStarts);
  if (shapesInt32) new Int32Array(out.buffer, layout.shapes, c.shapes.length).set(c.shapes);
  else new Float64Array(out.buffer, layout.shapes, c.shapes.length).set(c.shapes);
  new Int32Array(out.buffer, layout.fqnIds, n).set(c.fqnIds);
  out.set(c.types, layout.types);
  if (boxesInt32) new Int32Array(out.buffer, layout.boxes, boxes.length).set(boxes);
  else new Float64Array(out.buffer, layout.boxes, boxes.length).set(boxes);
  if (c.chunkIndex) new Int32Array(out.buffer, layout.chunkIndex, n).set(c.chunkIndex);
  return out;
}

/** Whether a path is exactly `expected`. */
function samePath(path: ObjectPath, expected: readonly string[]): boolean {
  return path.length === expected.length && path.every((p, i) => p === expected[i]);
}

/**
 * Planner data (fqn → path) as it travels: an fqn of the table as its id, a path that is `[fqn]`
 * as 0 and one that is the fqn split at dots as 1 (what flattening a nested dict gives), others as
 * they are.
 */
function compactPlannerData(
  data: ReadonlyArray<readonly [string, ObjectPath]>,
  fqns: readonly string[],
): [string | number, ObjectPath | number][] {
  const ids = new Map(fqns.map((f, i) => [f, i]));
  return data.map(([fqn, path]) => [
    ids.get(fqn) ?? fqn,
    samePath(path, [fqn]) ? 0 : samePath(path, fqn.split(".")) ? 1 : path,
  ]);
}

/** {@link compactPlannerData} undone. */
function expandPlannerData(compact: unknown, fqns: readonly string[]): Array<[string, ObjectPath]> {
  if (!Array.isArray(compact)) invalid("planner data that is not an array");
  return compact.map((entry: unknown) => {
    if (!Array.isArray(entry) || entry.length !== 2) invalid("a planner data entry that is not a pair");
    const [key, path] = entry as [unknown, unknown];
    const fqn = typeof key === "number" ? fqns[key] : key;
    if (typeof fqn !== "string") invalid(`planner data naming fqn ${String(key)}`);
    if (path === 0) return [fqn, [fqn]];
    if (path === 1) return [fqn, fqn.split(".")];
    if (!Array.isArray(path) || !path.every((p) => typeof p === "string" || typeof p === "number"))
      invalid(`a path for "${fqn}" that is not strings and numbers`);
    return [fqn, path as ObjectPath];
  });
}

/** Where each section of an encoded plan starts, and its total length. */
function sectionLayout(
  nf: number,
  n: number,
  nShapes: number,
  nBoxes: number,
  fqnLen: number,
  plannerLen: number,
  storageLen: number,
  boxesInt32: boolean,
  shapesInt32: boolean,
  hasChunkIndex: boolean,
) {
  let at = HEADER_WORDS * 4;
  const next = (bytes: number) => {
    const start = at;
    at = align8(at + bytes);
    return start;
  };
  const fqnJson = next(fqnLen);
  const plannerJson = next(plannerLen);
  const storageJson = next(storageLen);
  const dtypes = next(nf);
  const shapeStarts = next(4 * (nf + 1));
  const shapes = next((shapesInt32 ? 4 : 8) * nShapes);
  const fqnIds = next(4 * n);
  const types = next(n);
  const boxes = next((boxesInt32 ? 4 : 8) * nBoxes);
  const chunkIndex = next(hasChunkIndex ? 4 * n : 0);
  return {
    fqnJson,
    plannerJson,
    storageJson,
    dtypes,
    shapeStarts,
    shapes,
    fqnIds,
    types,
    boxes,
    chunkIndex,
    total: at,
  };
}

function invalid(what: string): never {
  throw new CheckpointError("INVALID_PLAN", `Expected an encoded save plan (DSP1), got ${what}`);
}

/** Whether two byte ranges hold the same bytes. */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Decodes save plans from {@link encodeSavePlan}'s bytes. One decoder reads the plans of one
 * gather: a plan whose fqn or planner-data section holds the same bytes as the previous plan's
 * shares its decoded fqns and planner data (the same arrays), so the ranks of one model cost one
 * parse, and the coordinator sees that their fqn tables are one.
 */
export class SavePlanDecoder {
  #fqnBytes: Uint8Array | undefined;
  #fqns: readonly string[] = [];
  #plannerBytes: Uint8Array | undefined;
  #plannerData: Array<[string, ObjectPath]> | undefined;
  #plannerFqns: readonly string[] | undefined;

  /**
   * Decodes one plan.
   *
   * @param bytes - what {@link encodeSavePlan} made (copied if not 8-byte aligned).
   * @returns the plan, over columns of its own copied out of `bytes` (which it does not keep: a
   * coordinator holding 4,096 plans holds their columns, not their messages' fqn tables).
   * @throws {@link CheckpointError} `INVALID_PLAN` when the bytes are not a well-formed plan.
   */
  decode(bytes: Uint8Array): SavePlan {
    if (bytes.byteOffset % 8 !== 0) {
      // A copy on an aligned buffer of its own (a Node Buffer's slice would be a view).
      const aligned = new Uint8Array(bytes.length);
      aligned.set(bytes);
      bytes = aligned;
    }
    if (bytes.length < HEADER_WORDS * 4) invalid(`${bytes.length} bytes`);
    const h = new Uint32Array(bytes.buffer, bytes.byteOffset, HEADER_WORDS);
    if (h[0] !== MAGIC) invalid(`magic 0x${h[0]!.toString(16)}`);
    const [, flags, nf, n, nShapes, nBoxes, fqnLen, plannerLen, storageLen] = h as unknown as number[];
    const boxesInt32 = (flags! & BOXES_INT32) !== 0;
    const shapesInt32 = (flags! & SHAPES_INT32) !== 0;
    const hasChunkIndex = (flags! & HAS_CHUNK_INDEX) !== 0;
    const layout = sectionLayout(
      nf!,
      n!,
      nShapes!,
      nBoxes!,
      fqnLen!,
      plannerLen!,
      storageLen!,
      boxesInt32,
      shapesInt32,
      hasChunkIndex,
    );
    if (layout.total !== bytes.length) invalid(`${bytes.length} bytes where its header says ${layout.total}`);
    const buffer = bytes.buffer;
    const at = bytes.byteOffset;
    const fqnBytes = bytes.subarray(layout.fqnJson, layout.fqnJson + fqnLen!);
    if (!this.#fqnBytes || !sameBytes(this.#fqnBytes, fqnBytes)) {
      const fqns = parseJson(fqnBytes, "fqns");
      if (!Array.isArray(fqns) || fqns.length !== nf || !fqns.every((f) => typeof f === "string"))
        invalid(`an fqn table that is not ${nf} strings`);
      this.#fqnBytes = fqnBytes.slice();
      this.#fqns = fqns as string[];
    }
    let plannerData: Array<[string, ObjectPath]> | undefined;
    if (flags! & HAS_PLANNER_DATA) {
      const plannerBytes = bytes.subarray(layout.plannerJson, layout.plannerJson + plannerLen!);
      // The same bytes over the same fqn table: the same planner data.
      if (
        this.#plannerFqns !== this.#fqns ||
        !this.#plannerBytes ||
        !sameBytes(this.#plannerBytes, plannerBytes)
      ) {
        this.#plannerData = expandPlannerData(parseJson(plannerBytes, "planner data"), this.#fqns);
        this.#plannerBytes = plannerBytes.slice();
        this.#plannerFqns = this.#fqns;
      }
      plannerData = this.#plannerData;
    }
    const storageData =
      flags! & HAS_STORAGE_DATA
        ? (parseJson(
            bytes.subarray(layout.storageJson, layout.storageJson + storageLen!),
            "storage data",
          ) as StoragePrefix)
        : undefined;
    const dtypes = new Uint8Array(buffer, at + layout.dtypes, nf).slice();
    const shapeStarts = new Int32Array(buffer, at + layout.shapeStarts, nf! + 1).slice();
    const shapes = shapesInt32
      ? Float64Array.from(new Int32Array(buffer, at + layout.shapes, nShapes))
      : new Float64Array(buffer, at + layout.shapes, nShapes).slice();
    const fqnIds = new Int32Array(buffer, at + layout.fqnIds, n).slice();
    const types = new Uint8Array(buffer, at + layout.types, n).slice();
    const boxes = boxesInt32
      ? Float64Array.from(new Int32Array(buffer, at + layout.boxes, nBoxes))
      : new Float64Array(buffer, at + layout.boxes, nBoxes).slice();
    const chunkIndex = hasChunkIndex ? new Int32Array(buffer, at + layout.chunkIndex, n).slice() : undefined;
    // Every id and start in range before anything indexes by them.
    if (shapeStarts[0] !== 0 || shapeStarts[nf!] !== nShapes)
      invalid("global sizes that do not fill their column");
    for (let f = 0; f < nf!; f++) {
      if (shapeStarts[f + 1]! < shapeStarts[f]!) invalid(`a negative number of dims for fqn ${f}`);
      if (dtypes[f] !== NO_DTYPE && dtypes[f]! >= DTYPES.length) invalid(`dtype code ${dtypes[f]}`);
    }
    const boxStarts = new Int32Array(n!);
    let box = 0;
    for (let i = 0; i < n!; i++) {
      const f = fqnIds[i]!;
      if (f < 0 || f >= nf!) invalid(`fqn id ${f} of ${nf}`);
      const type = types[i]!;
      if (type >= WRITE_ITEM_TYPES.length) invalid(`item type ${type}`);
      if ((type === 2) !== (dtypes[f] === NO_DTYPE))
        invalid(
          `item ${i} of kind ${WRITE_ITEM_TYPES[type]} for an fqn with${dtypes[f] === NO_DTYPE ? "out" : ""} a dtype`,
        );
      boxStarts[i] = box;
      if (type !== 2) box += 2 * (shapeStarts[f + 1]! - shapeStarts[f]!);
    }
    if (box !== nBoxes) invalid(`${nBoxes} box values where its items need ${box}`);
    const columns: SavePlanColumns = {
      fqns: this.#fqns,
      dtypes,
      shapeStarts,
      shapes,
      fqnIds,
      types,
      boxStarts,
      boxes,
      ...(chunkIndex ? { chunkIndex } : {}),
    };
    return columnarSavePlan(columns, {
      ...(plannerData ? { plannerData } : {}),
      ...(storageData ? { storageData } : {}),
    });
  }
}

function parseJson(bytes: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(fromUtf8.decode(bytes));
  } catch {
    invalid(`${what} that are not JSON`);
  }
}

/**
 * Decodes one plan from {@link encodeSavePlan}'s bytes (a fresh {@link SavePlanDecoder}).
 *
 * @param bytes - the encoded plan.
 * @throws {@link CheckpointError} `INVALID_PLAN` when the bytes are not a well-formed plan.
 */
export function decodeSavePlan(bytes: Uint8Array): SavePlan {
  return new SavePlanDecoder().decode(bytes);
}
