import { CheckpointError } from "../errors.js";
import { isShardedTensor, isTensor, type ShardedTensor, type Tensor } from "./tensor.js";
import { assertStateDictValue } from "./value-codec.js";

/**
 * A value a state dict holds besides tensors — one that comes back from a load as itself, of the
 * same type: a number (`-0`, `NaN` and infinities included), string, boolean, `null`, a `bigint`
 * from -2^63 to 2^64-1, a `Uint8Array`, a valid `Date`, or an array of these. `undefined` is
 * accepted and comes back as `null`. Anything else — a bare `Float32Array` (use `tensor(...)`),
 * a `Buffer`, `DataView`, `Map`, `Set`, class instance, function or symbol — is refused with
 * `INVALID_STATE_DICT` by `save` and `load`, and by this type where TypeScript can tell.
 */
export type StateDictValue =
  | number
  | string
  | boolean
  | null
  | undefined
  | bigint
  | Uint8Array
  | Date
  | readonly StateDictValue[];

/** What a state dict holds under a key: a tensor, a sharded tensor, a value, or more nesting. */
export type StateDictEntry =
  | Tensor
  | ShardedTensor
  | StateDictValue
  | readonly StateDictEntry[]
  | { readonly [key: string]: StateDictEntry };

/**
 * A state dict: nested plain objects and arrays whose leaves are {@link Tensor}s,
 * {@link ShardedTensor}s, or {@link StateDictValue}s. Object type literals and type aliases fit
 * it; an `interface` does not (TypeScript gives interfaces no index signature) — declare the shape
 * with `type` instead.
 */
export type StateDict = { [key: string]: StateDictEntry };

/** A leaf of a flattened state dict. */
export type StateDictLeaf = Tensor | ShardedTensor | unknown;

/** The path from the root of a state dict to a leaf: object keys and array indices. */
export type ObjectPath = readonly (string | number)[];

/** A flattened state dict and how to rebuild its nesting. */
export interface FlatStateDict {
  /** fqn → leaf, in traversal order. The fqn is the path joined with `.`, as DCP. */
  readonly flat: Map<string, StateDictLeaf>;
  /** fqn → path of the leaf in the nested state dict. */
  readonly mappings: Map<string, ObjectPath>;
}

/** Options of {@link flattenStateDict}. */
export interface FlattenOptions {
  /**
   * Refuse an element of a descended list that yields no entry — an empty object, or an object of
   * empty objects — as a save must: it saves nothing, so the list could not be rebuilt on load
   * (its later indices would point past what was saved, which a `.metadata` decoder refuses, and
   * the element itself would be lost). A load target may hold one. @default false
   */
  readonly refuseEmptyInLists?: boolean;
}

/** Keys that would change an object's prototype when assigned; never accepted in a path. */
const UNSAFE_KEYS = new Set(["__proto__"]);

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  if (ArrayBuffer.isView(value) || isTensor(value) || isShardedTensor(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * Whether a list is a leaf (stored whole as one value) rather than descended into: as DCP's
 * `_is_terminal`, a list is descended when it holds a tensor, an object, or a list that is itself
 * descended.
 */
function isTerminalList(list: readonly unknown[]): boolean {
  for (const entry of list) {
    if (isTensor(entry) || isShardedTensor(entry) || isPlainObject(entry)) return false;
    if (Array.isArray(entry) && !isTerminalList(entry)) return false;
  }
  return true;
}

/**
 * Flattens a nested state dict into `fqn → leaf`, with DCP's rules (`flatten_state_dict`,
 * traversal since torch 2.4): plain objects are always descended (an empty object yields no
 * entry); an array is descended only when it holds a tensor, an object or a descended array —
 * otherwise the whole array is one leaf; everything else is a leaf. The fqn is the path joined
 * with `.` (array indices as decimal numbers).
 *
 * @param stateDict - the nested state dict.
 * @param options - see {@link FlattenOptions}. @default {}
 * @returns the flat map and the path of each fqn.
 * @throws {@link CheckpointError} `INVALID_STATE_DICT` when two paths flatten to the same fqn
 * (e.g. `{ "a.b": 1, a: { b: 2 } }`), a key is `__proto__`, or a leaf is neither a tensor nor a
 * value that round-trips as itself (a bare `Float32Array`, a `Map`, a class instance, a
 * function…: see {@link assertStateDictValue}), naming its fqn and what to use instead; with
 * `refuseEmptyInLists`, when an element of a descended list yields no entry (`{ xs: [{}, 0] }`).
 */
export function flattenStateDict(stateDict: StateDict, options: FlattenOptions = {}): FlatStateDict {
  const flat = new Map<string, StateDictLeaf>();
  const mappings = new Map<string, ObjectPath>();
  const refuseEmpty = options.refuseEmptyInLists === true;
  // `path` is the leaf's own array (kept in `mappings`); `fqn` is `path` joined with ".", built
  // as the walk descends rather than joined again at every leaf.
  const visit = (path: (string | number)[], fqn: string, value: unknown): void => {
    let tensorLike = false;
    if (typeof value === "object" && value !== null) {
      if (Array.isArray(value)) {
        if (!isTerminalList(value)) {
          visitList(path, fqn, value);
          return;
        }
        tensorLike = isTensor(value) || isShardedTensor(value);
      } else if (isTensor(value) || isShardedTensor(value)) {
        tensorLike = true;
      } else if (!ArrayBuffer.isView(value)) {
        const proto = Object.getPrototypeOf(value);
        if (proto === Object.prototype || proto === null) {
          visitObject(path, fqn, value as Record<string, unknown>);
          return;
        }
      }
    }
    // One lookup, not two: a key seen before leaves the size as it was (and the save fails).
    const size = flat.size;
    flat.set(fqn, value);
    if (flat.size === size) {
      throw new CheckpointError(
        "INVALID_STATE_DICT",
        `Expected unique flattened keys, but "${fqn}" comes from both [${mappings.get(fqn)!.join(", ")}] and [${path.join(", ")}]`,
      );
    }
    if (!tensorLike) assertStateDictValue(value, fqn);
    mappings.set(fqn, path);
  };
  const visitObject = (path: (string | number)[], fqn: string, value: Record<string, unknown>): void => {
    const prefix = path.length === 0 ? "" : `${fqn}.`;
    for (const key of Object.keys(value)) {
      if (UNSAFE_KEYS.has(key)) {
        throw new CheckpointError(
          "INVALID_STATE_DICT",
          `Expected state-dict keys other than "__proto__", found one at "${[...path, key].join(".")}"`,
        );
      }
      const child = path.length === 0 ? [key] : path.slice();
      if (path.length > 0) child.push(key);
      visit(child, prefix + key, value[key]);
    }
  };
  const visitList = (path: (string | number)[], fqn: string, value: readonly unknown[]): void => {
    const prefix = path.length === 0 ? "" : `${fqn}.`;
    value.forEach((v, i) => {
      const before = flat.size;
      const child = path.slice();
      child.push(i);
      visit(child, prefix + String(i), v);
      if (refuseEmpty && flat.size === before) {
        const what =
          Object.keys(v as object).length === 0 ? "an empty object" : "an object holding only empty objects";
        throw new CheckpointError(
          "INVALID_STATE_DICT",
          `Expected "${[...path, i].join(".")}", an element of a list, to hold a tensor or a value, got ${what}: it saves no entry, so the list could not be rebuilt on load — remove it from the list, or put null or a value in its place`,
        );
      }
    });
  };
  visit([], "", stateDict);
  return { flat, mappings };
}

/** A state dict flattened for a load: {@link flattenStateDict}'s `flat`, and the paths of its values only. */
export interface FlatLoadTargets {
  /** fqn → leaf, in traversal order, as {@link FlatStateDict.flat}. */
  readonly flat: Map<string, StateDictLeaf>;
  /** fqn → path of each leaf that is not a tensor (what a load replaces in the nested state dict). */
  readonly valuePaths: Map<string, ObjectPath>;
}

/**
 * {@link flattenStateDict} for a load's targets — the same leaves, fqns, order and errors — with
 * paths kept for values only (a tensor is loaded in place; only a value is set by its path): no
 * path array per tensor, each fqn built by appending to its parent's.
 *
 * @param stateDict - the nested state dict.
 * @returns the flat map and the path of each value's fqn.
 * @throws {@link CheckpointError} as {@link flattenStateDict} (without `refuseEmptyInLists`).
 */
export function flattenLoadTargets(stateDict: StateDict): FlatLoadTargets {
  const flat = new Map<string, StateDictLeaf>();
  const valuePaths = new Map<string, ObjectPath>();
  const steps: (string | number)[] = [];
  const visit = (fqn: string | undefined, value: unknown): void => {
    if (isPlainObject(value)) {
      for (const key of Object.keys(value)) {
        if (UNSAFE_KEYS.has(key)) refuseFlattening(stateDict);
        steps.push(key);
        visit(fqn === undefined ? key : `${fqn}.${key}`, value[key]);
        steps.pop();
      }
      return;
    }
    if (Array.isArray(value) && !isTerminalList(value)) {
      value.forEach((v, i) => {
        steps.push(i);
        visit(fqn === undefined ? `${i}` : `${fqn}.${i}`, v);
        steps.pop();
      });
      return;
    }
    const key = fqn ?? "";
    if (flat.has(key)) refuseFlattening(stateDict);
    if (!isTensor(value) && !isShardedTensor(value)) {
      assertStateDictValue(value, key);
      valuePaths.set(key, [...steps]);
    }
    flat.set(key, value);
  };
  visit(undefined, stateDict);
  return { flat, valuePaths };
}

/**
 * Throws {@link flattenStateDict}'s error for a state dict {@link flattenLoadTargets} refuses (a
 * `__proto__` key, two paths to one fqn): its message names both paths, which only it keeps.
 */
function refuseFlattening(stateDict: StateDict): never {
  flattenStateDict(stateDict);
  throw new CheckpointError(
    "INVALID_STATE_DICT",
    "Expected a state dict that flattens, got one that does not",
  );
}

/**
 * Sets `value` at `path` in `root`, creating `{}` for a string key and `[]` for a numeric index
 * on the way (arrays are padded with `null`), as DCP's `set_element`.
 *
 * @param root - the nested state dict to modify.
 * @param path - the path, at least one step.
 * @param value - the value to set.
 * @throws {@link CheckpointError} `INVALID_STATE_DICT` for a `__proto__` step or an empty path.
 */
export function setElement(root: StateDict, path: ObjectPath, value: unknown): void {
  if (path.length === 0) throw new CheckpointError("INVALID_STATE_DICT", "Expected a non-empty path");
  let cur: Record<string | number, unknown> = root;
  for (let i = 0; i < path.length; i++) {
    const key = path[i]!;
    if (typeof key === "string" && UNSAFE_KEYS.has(key)) {
      throw new CheckpointError(
        "INVALID_STATE_DICT",
        `Expected path steps other than "__proto__" in [${path.join(", ")}]`,
      );
    }
    if (Array.isArray(cur) && typeof key === "number") {
      while (cur.length < key) cur.push(null);
    }
    if (i === path.length - 1) {
      cur[key] = value;
      return;
    }
    const next = path[i + 1]!;
    let child = cur[key];
    if (typeof child !== "object" || child === null) {
      child = typeof next === "number" ? [] : {};
      cur[key] = child;
    }
    cur = child as Record<string | number, unknown>;
  }
}

/**
 * Reads the value at `path` in `root`, or `undefined` when any step is missing, as DCP's
 * `get_element`.
 *
 * @param root - the nested state dict.
 * @param path - the path.
 */
export function getElement(root: StateDict, path: ObjectPath): unknown {
  let cur: unknown = root;
  for (const key of path) {
    if (typeof cur !== "object" || cur === null || !Object.hasOwn(cur, key)) return undefined;
    cur = (cur as Record<string | number, unknown>)[key];
  }
  return cur;
}

/**
 * Rebuilds a nested state dict from `fqn → leaf` and the paths recorded by
 * {@link flattenStateDict}, as DCP's `unflatten_state_dict`. An fqn with no recorded path is put
 * at the top level under its fqn.
 *
 * @param flat - fqn → leaf.
 * @param mappings - fqn → path.
 * @throws {@link CheckpointError} `INVALID_STATE_DICT` for unsafe paths (see {@link setElement}).
 */
export function unflattenStateDict(
  flat: ReadonlyMap<string, unknown>,
  mappings: ReadonlyMap<string, ObjectPath>,
): StateDict {
  const root: StateDict = {};
  for (const [fqn, value] of flat) setElement(root, mappings.get(fqn) ?? [fqn], value);
  return root;
}
