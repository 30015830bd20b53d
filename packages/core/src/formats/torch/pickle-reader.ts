import { MetadataError } from "../../errors.js";
import { DecodeBudget, DecodeLimitError } from "../../model/decode-budget.js";

/** Most entries of the unpickler's stack and memo (each). */
export const MAX_PICKLE_ENTRIES = 1_000_000;

/** A Python tuple (a frozen array, told apart from a list). */
export class PyTuple extends Array<unknown> {
  /** Tuples nested in it, itself included (1 for a tuple of no tuples): known when it is made, as tuples are immutable. */
  nesting = 1;
}

/** A Python object of an allowlisted class, as NEWOBJ + BUILD leave it: its class path and its state. */
export class PyObject {
  /** `module.qualname` of its class. */
  readonly cls: string;
  /** What BUILD gave it (a Map for dataclasses, a tuple for `__getstate__` tuples). */
  state: unknown = undefined;

  /** @param cls - `module.qualname`. */
  constructor(cls: string) {
    this.cls = cls;
  }
}

/** What a pickled global resolves to: how it is called (REDUCE), instantiated (NEWOBJ), or used as a value. */
export interface PickleGlobal {
  /**
   * REDUCE: the global called with these arguments; whatever it copies or walks it charges to
   * `budget` (the unpickler has charged one node per argument).
   */
  readonly call?: (args: readonly unknown[], budget: DecodeBudget) => unknown;
  /** NEWOBJ: a new, empty instance (filled by BUILD). */
  readonly newObject?: () => PyObject;
  /** The global used as a value (a dtype, a storage class). */
  readonly value?: unknown;
}

/** Options of {@link unpickle}. */
export interface UnpickleOptions {
  /** Allowlisted globals by `module.name`; anything else is refused. */
  readonly globals: ReadonlyMap<string, PickleGlobal>;
  /** BINPERSID: resolves a persistent id (torch's storages); refused when absent. */
  readonly persistentLoad?: (pid: unknown) => unknown;
  /** Names the input in errors, e.g. `.metadata`. */
  readonly what: string;
  /**
   * The decode's budget, shared with the walks over the result.
   * @default a new {@link DecodeBudget} for the input's size
   */
  readonly budget?: DecodeBudget;
}

/** One step of the walk that turns a tuple key into text: a tuple and the next element to write. */
interface KeyFrame {
  readonly items: readonly unknown[];
  next: number;
}

/** JSON text of a scalar element of a tuple key (a bigint as its decimal string); undefined for anything else. */
function scalarKeyText(v: unknown): string | undefined {
  if (v === null || typeof v === "boolean" || typeof v === "number" || typeof v === "string")
    return JSON.stringify(v);
  if (typeof v === "bigint") return `"${v}"`;
  return undefined;
}

/**
 * The text a tuple dict key is kept under: the JSON of its elements (`(1, "a")` → `[1,"a"]`,
 * bigints as decimal strings), built without recursion and within `budget` — every element
 * visited is a node, however often the memo shares it, and every character a byte — so that a
 * key that is a DAG of shared tuples cannot expand exponentially.
 *
 * @param key - the tuple.
 * @param budget - the decode's budget.
 * @returns the key's text.
 * @throws {@link MetadataError} `MALFORMED_METADATA` past the budget, for nesting deeper than its
 * depth, or for an element other than None, a bool, a number, a string or a tuple.
 */
export function tupleKeyText(key: PyTuple, budget: DecodeBudget): string {
  const out: string[] = ["["];
  const frames: KeyFrame[] = [{ items: key, next: 0 }];
  budget.nodes();
  while (frames.length > 0) {
    const frame = frames.at(-1)!;
    if (frame.next === frame.items.length) {
      out.push("]");
      frames.pop();
      continue;
    }
    if (frame.next > 0) out.push(",");
    const v = frame.items[frame.next++];
    budget.nodes();
    if (v instanceof PyTuple) {
      budget.depth(frames.length + 1);
      out.push("[");
      frames.push({ items: v, next: 0 });
      continue;
    }
    if (typeof v === "string") budget.bytes(v.length);
    const text = scalarKeyText(v);
    if (text === undefined)
      return budget.fail("expected a dict key of None, bools, numbers, strings and tuples of them");
    budget.bytes(text.length);
    out.push(text);
  }
  return out.join("");
}

/**
 * A restricted unpickler for the pickles torch writes (protocols 2–5): only the opcodes of
 * `.metadata` files and `torch.save` archives; globals resolved only through an allowlist (never
 * looked up by name); dict keys kept in `Map`s (never object keys); stack and memo bounded by
 * {@link MAX_PICKLE_ENTRIES}; every length checked against the bytes left, before allocating;
 * every value pushed (a memo reference too) and every byte of text or binary charged to the
 * decode's {@link DecodeBudget}; a tuple key turned into text ({@link tupleKeyText}) within it,
 * and an unhashable key (a list, a dict) refused.
 * Python values become: None → null, bool, int → number (bigint beyond 2⁵³), float → number,
 * str → string, bytes → Uint8Array, list → array, tuple → {@link PyTuple}, dict → Map.
 *
 * @param bytes - the pickle.
 * @param options - the allowlist, the persistent-id hook and the input's name.
 * @returns the unpickled value.
 * @throws {@link MetadataError} `MALFORMED_METADATA` naming an unknown opcode, a global outside the
 * allowlist (`module.name`), a crossed limit, or truncated input, with the byte offset; a
 * {@link DecodeLimitError} naming the bound when tuples nest too deep or the input expands beyond
 * its budget.
 */
export function unpickle(bytes: Uint8Array, options: UnpickleOptions): unknown {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const end = bytes.byteLength;
  const stack: unknown[] = [];
  const marks: number[] = [];
  const memo = new Map<number, unknown>();
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const budget = options.budget ?? new DecodeBudget(options.what, bytes.byteLength);
  let at = 0;
  const fail = (message: string): never => {
    throw new MetadataError(`Malformed ${options.what}: ${message} (at byte ${at})`);
  };
  const need = (n: number | bigint) => {
    if (BigInt(n) > BigInt(end - at)) fail(`expected ${n} more bytes, found ${end - at}`);
  };
  const take = (n: number): Uint8Array => {
    need(n);
    const out = bytes.subarray(at, at + n);
    at += n;
    return out;
  };
  /** Reads an unsigned little-endian integer of `width` bytes (1, 2 or 4). */
  const unsigned = (width: 1 | 2 | 4): number => {
    need(width);
    const v = width === 1 ? bytes[at]! : width === 2 ? view.getUint16(at, true) : view.getUint32(at, true);
    at += width;
    return v;
  };
  const u8 = () => unsigned(1);
  const u16 = () => unsigned(2);
  const u32 = () => unsigned(4);
  const u64 = () => {
    need(8);
    at += 8;
    const v = view.getBigUint64(at - 8, true);
    if (v > BigInt(end)) fail(`a length of ${v} exceeds the input`);
    return Number(v);
  };
  const text = (n: number) => {
    budget.bytes(n);
    try {
      return decoder.decode(take(n));
    } catch {
      return fail("expected UTF-8 text");
    }
  };
  const line = (): string => {
    const stop = bytes.indexOf(0x0a, at);
    if (stop < 0) fail("expected a newline");
    return text(stop - at + 1).slice(0, -1);
  };
  const push = (v: unknown) => {
    budget.nodes();
    if (stack.length >= MAX_PICKLE_ENTRIES) fail(`the stack grew beyond ${MAX_PICKLE_ENTRIES} entries`);
    stack.push(v);
  };
  const pop = (): unknown => {
    if (stack.length === 0 || (marks.length > 0 && stack.length <= marks.at(-1)!)) fail("the stack is empty");
    return stack.pop();
  };
  const popMark = (): unknown[] => {
    const m = marks.pop();
    if (m === undefined) fail("no MARK to pop to");
    return stack.splice(m!);
  };
  const remember = (key: number) => {
    if (memo.size >= MAX_PICKLE_ENTRIES && !memo.has(key))
      fail(`the memo grew beyond ${MAX_PICKLE_ENTRIES} entries`);
    if (stack.length === 0) fail("nothing to memoize");
    memo.set(key, stack.at(-1));
  };
  const recall = (key: number) => {
    if (!memo.has(key)) fail(`no memo entry ${key}`);
    push(memo.get(key));
  };
  const resolve = (module: string, name: string): PickleGlobal => {
    const g = options.globals.get(`${module}.${name}`);
    if (!g) fail(`refusing the global ${module}.${name} (not in the allowlist)`);
    return g!;
  };
  const setItems = (target: unknown, items: unknown[]) => {
    if (!(target instanceof Map)) fail("SETITEM(S) on something that is not a dict");
    for (let i = 0; i + 1 < items.length; i += 2)
      (target as Map<unknown, unknown>).set(keyOf(items[i]), items[i + 1]);
  };
  const keyOf = (k: unknown) => {
    if (k instanceof PyTuple) return tupleKeyText(k, budget);
    if (Array.isArray(k) || k instanceof Map)
      fail(`an unhashable dict key (a ${Array.isArray(k) ? "list" : "dict"})`);
    return k;
  };
  /** A tuple of `items`, refused when tuples nest deeper than the budget's depth (a key is then never walked). */
  const tuple = (items: readonly unknown[]): PyTuple => {
    const t = new PyTuple();
    let nesting = 1;
    for (const v of items) {
      t.push(v);
      if (v instanceof PyTuple && v.nesting >= nesting) nesting = v.nesting + 1;
    }
    if (nesting > budget.limits.depth)
      throw new DecodeLimitError(
        "depth",
        `Malformed ${options.what}: expected tuples nested at most ${budget.limits.depth} deep (at byte ${at})`,
      );
    t.nesting = nesting;
    return t;
  };
  const copy = (raw: Uint8Array) => {
    budget.bytes(raw.byteLength);
    return new Uint8Array(raw);
  };
  const int = (raw: Uint8Array): number | bigint => {
    if (raw.length === 0) return 0;
    let v = 0n;
    for (let i = raw.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(raw[i]!);
    if (raw[raw.length - 1]! & 0x80) v -= 1n << BigInt(raw.length * 8);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        u8();
        break;
      case 0x95: // FRAME
        u64();
        break;
      case 0x2e: // STOP
        if (stack.length !== 1 || marks.length > 0) fail(`expected one value at STOP, found ${stack.length}`);
        return stack[0];
      case 0x4e: // NONE
        push(null);
        break;
      case 0x88: // NEWTRUE
        push(true);
        break;
      case 0x89: // NEWFALSE
        push(false);
        break;
      case 0x4b: // BININT1
        push(u8());
        break;
      case 0x4d: // BININT2
        push(u16());
        break;
      case 0x4a: // BININT
        need(4);
        at += 4;
        push(view.getInt32(at - 4, true));
        break;
      case 0x8a: // LONG1
        push(int(take(u8())));
        break;
      case 0x8b: {
        // LONG4
        const n = u32();
        if (n > 64) fail(`an integer of ${n} bytes`);
        push(int(take(n)));
        break;
      }
      case 0x47: // BINFLOAT (big-endian)
        need(8);
        at += 8;
        push(view.getFloat64(at - 8, false));
        break;
      case 0x8c: // SHORT_BINUNICODE
        push(text(u8()));
        break;
      case 0x58: // BINUNICODE
        push(text(u32()));
        break;
      case 0x8d: // BINUNICODE8
        push(text(u64()));
        break;
      case 0x55: // SHORT_BINSTRING
        push(text(u8()));
        break;
      case 0x54: // BINSTRING
        push(text(u32()));
        break;
      case 0x43: // SHORT_BINBYTES
        push(copy(take(u8())));
        break;
      case 0x42: // BINBYTES
        push(copy(take(u32())));
        break;
      case 0x8e: // BINBYTES8
        push(copy(take(u64())));
        break;
      case 0x29: // EMPTY_TUPLE
        push(new PyTuple());
        break;
      case 0x85: // TUPLE1
        push(tuple([pop()]));
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        push(tuple([pop(), b]));
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        push(tuple([pop(), b, c]));
        break;
      }
      case 0x28: // MARK
        marks.push(stack.length);
        break;
      case 0x74: // TUPLE
        push(tuple(popMark()));
        break;
      case 0x5d: // EMPTY_LIST
        push([]);
        break;
      case 0x6c: // LIST
        push(popMark());
        break;
      case 0x61: {
        // APPEND
        const v = pop();
        const list = stack.at(-1);
        if (!Array.isArray(list) || list instanceof PyTuple) fail("APPEND to something that is not a list");
        (list as unknown[]).push(v);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        const list = stack.at(-1);
        if (!Array.isArray(list) || list instanceof PyTuple) fail("APPENDS to something that is not a list");
        for (const v of items) (list as unknown[]).push(v);
        break;
      }
      case 0x7d: // EMPTY_DICT
        push(new Map());
        break;
      case 0x64: {
        // DICT
        const m = new Map();
        setItems(m, popMark());
        push(m);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItems(stack.at(-1), [k, v]);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        setItems(stack.at(-1), items);
        break;
      }
      case 0x8f: // EMPTY_SET
        push(new Set());
        break;
      case 0x90: {
        // ADDITEMS
        const items = popMark();
        const set = stack.at(-1);
        if (!(set instanceof Set)) fail("ADDITEMS to something that is not a set");
        for (const v of items) (set as Set<unknown>).add(v);
        break;
      }
      case 0x91: // FROZENSET
        push(new Set(popMark()));
        break;
      case 0x30: // POP
        pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        push(stack.at(-1));
        break;
      case 0x94: // MEMOIZE
        remember(memo.size);
        break;
      case 0x71: // BINPUT
        remember(u8());
        break;
      case 0x72: // LONG_BINPUT
        remember(u32());
        break;
      case 0x68: // BINGET
        recall(u8());
        break;
      case 0x6a: // LONG_BINGET
        recall(u32());
        break;
      case 0x63: {
        // GLOBAL
        const module = line();
        push(resolve(module, line()));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== "string" || typeof name !== "string") fail("STACK_GLOBAL needs two strings");
        push(resolve(module as string, name as string));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        const g = pop() as PickleGlobal;
        if (!(args instanceof PyTuple)) fail("REDUCE needs an argument tuple");
        if (typeof g?.call !== "function") fail("REDUCE of something that cannot be called");
        budget.nodes((args as PyTuple).length);
        push(g.call!(args as PyTuple, budget));
        break;
      }
      case 0x81: {
        // NEWOBJ
        const args = pop();
        const g = pop() as PickleGlobal;
        if (!(args instanceof PyTuple) || args.length !== 0) fail("NEWOBJ with arguments");
        if (typeof g?.newObject !== "function") fail("NEWOBJ of something that is not an allowlisted class");
        push(g.newObject!());
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop();
        const obj = stack.at(-1);
        if (!(obj instanceof PyObject)) fail("BUILD on something that is not an allowlisted object");
        (obj as PyObject).state = state;
        break;
      }
      case 0x51: {
        // BINPERSID
        const pid = pop();
        if (!options.persistentLoad) fail("a persistent id where none is expected");
        push(options.persistentLoad!(pid));
        break;
      }
      default:
        fail(`refusing the opcode 0x${op.toString(16).padStart(2, "0")}`);
    }
  }
}
