import { concatBytes } from "#platform";
import { CheckpointError } from "../../errors.js";

/** A Python global to emit, `module.name`. */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
}

/** `callable(*args)` (REDUCE). */
export class PyReduce {
  constructor(
    readonly callable: PyGlobal,
    readonly args: readonly PickleValue[],
  ) {}
}

/** An instance of a class made empty (NEWOBJ) and, unless `state` is undefined, filled by BUILD. */
export class PyNewObj {
  constructor(
    readonly cls: PyGlobal,
    readonly state?: PickleValue,
  ) {}
}

/** A persistent id (BINPERSID): how torch refers to a storage from `data.pkl`. */
export class PyPersistentId {
  constructor(readonly id: PickleValue) {}
}

/** A Python tuple (an array is emitted as a list). */
export class PyTupleValue {
  constructor(readonly items: readonly PickleValue[]) {}
}

/** A Python dict with keys of any pickle value, in order. */
export class PyDict {
  constructor(readonly entries: readonly (readonly [PickleValue, PickleValue])[]) {}
}

/** What {@link pickle} writes. Plain objects become dicts with string keys; integers (numbers or bigints) ints. */
export type PickleValue =
  | null
  | undefined
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | readonly PickleValue[]
  | PyTupleValue
  | PyDict
  | PyGlobal
  | PyReduce
  | PyNewObj
  | PyPersistentId
  | { readonly [key: string]: PickleValue };

/**
 * Writes a value as a pickle, protocol 3 (bytes need it; every torch reads it), without a memo:
 * the subset that `.metadata` files and `torch.save` archives need. A number with an integer value
 * is written as an int (as in Python, `1.0` becomes `1`), other numbers as floats.
 *
 * @param value - the value.
 * @returns the pickle's bytes.
 * @throws {@link CheckpointError} `INVALID_STATE_DICT` for a value pickle cannot hold here (a
 * function, a symbol, a class instance).
 */
export function pickle(value: PickleValue): Uint8Array {
  const chunks: Uint8Array[] = [];
  const out = (...b: number[]) => chunks.push(Uint8Array.from(b));
  const u32 = (n: number) => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, n, true);
    chunks.push(b);
  };
  const str = (s: string) => {
    const b = new TextEncoder().encode(s);
    out(0x58); // BINUNICODE
    u32(b.byteLength);
    chunks.push(b);
  };
  const int = (v: number | bigint) => {
    const n = BigInt(v);
    if (n >= 0n && n < 256n) return out(0x4b, Number(n)); // BININT1
    if (n >= 0n && n < 65536n) return out(0x4d, Number(n) & 0xff, Number(n) >> 8); // BININT2
    if (n >= -(2n ** 31n) && n < 2n ** 31n) {
      const b = new Uint8Array(5);
      b[0] = 0x4a; // BININT
      new DataView(b.buffer).setInt32(1, Number(n), true);
      return chunks.push(b);
    }
    // LONG1: little-endian two's complement, as few bytes as hold the sign
    const bytes: number[] = [];
    let x = n;
    for (;;) {
      bytes.push(Number(x & 0xffn));
      x >>= 8n;
      if ((x === 0n && !(bytes.at(-1)! & 0x80)) || (x === -1n && bytes.at(-1)! & 0x80)) break;
    }
    out(0x8a, bytes.length, ...bytes);
  };
  const global = (g: PyGlobal) => {
    chunks.push(new TextEncoder().encode(`c${g.module}\n${g.name}\n`)); // GLOBAL
  };
  const emit = (v: PickleValue, depth: number): void => {
    if (depth > 64) throw new CheckpointError("INVALID_STATE_DICT", "Expected values nested at most 64 deep");
    if (v === null || v === undefined) return void out(0x4e);
    if (v === true) return void out(0x88);
    if (v === false) return void out(0x89);
    if (typeof v === "bigint") return void int(v);
    if (typeof v === "number") {
      if (Number.isSafeInteger(v) && !Object.is(v, -0)) return void int(v);
      const b = new Uint8Array(9);
      b[0] = 0x47; // BINFLOAT, big-endian
      new DataView(b.buffer).setFloat64(1, v, false);
      return void chunks.push(b);
    }
    if (typeof v === "string") return void str(v);
    if (v instanceof Uint8Array) {
      out(0x42); // BINBYTES
      u32(v.byteLength);
      return void chunks.push(v);
    }
    if (v instanceof PyGlobal) return void global(v);
    if (v instanceof PyReduce) {
      global(v.callable);
      emit(new PyTupleValue(v.args), depth + 1);
      return void out(0x52); // REDUCE
    }
    if (v instanceof PyNewObj) {
      global(v.cls);
      out(0x29, 0x81); // EMPTY_TUPLE, NEWOBJ
      if (v.state !== undefined) {
        emit(v.state, depth + 1);
        out(0x62); // BUILD
      }
      return;
    }
    if (v instanceof PyPersistentId) {
      emit(v.id, depth + 1);
      return void out(0x51); // BINPERSID
    }
    if (v instanceof PyTupleValue) {
      out(0x28); // MARK
      for (const x of v.items) emit(x, depth + 1);
      return void out(0x74); // TUPLE
    }
    if (Array.isArray(v)) {
      out(0x5d, 0x28); // EMPTY_LIST, MARK
      for (const x of v) emit(x, depth + 1);
      return void out(0x65); // APPENDS
    }
    if (v instanceof PyDict) {
      out(0x7d, 0x28); // EMPTY_DICT, MARK
      for (const [k, x] of v.entries) {
        emit(k, depth + 1);
        emit(x, depth + 1);
      }
      return void out(0x75); // SETITEMS
    }
    if (typeof v === "object") {
      const proto = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null)
        throw new CheckpointError(
          "INVALID_STATE_DICT",
          `Expected a plain value to pickle, got an object of class ${proto?.constructor?.name}`,
        );
      out(0x7d, 0x28);
      for (const [k, x] of Object.entries(v)) {
        str(k);
        emit(x as PickleValue, depth + 1);
      }
      return void out(0x75);
    }
    throw new CheckpointError("INVALID_STATE_DICT", `Expected a value pickle can hold, got a ${typeof v}`);
  };
  out(0x80, 3); // PROTO 3
  emit(value, 0);
  out(0x2e); // STOP
  return concatBytes(chunks);
}
