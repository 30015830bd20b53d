import { decode, encode } from "@msgpack/msgpack";
import { CheckpointError, type MetadataError } from "../errors.js";
import { assertMsgpackWithinLimits } from "./msgpack-bounds.js";

/** The bigints a value may hold: msgpack's int64 and uint64 (larger ones would be cut to 64 bits). */
const MIN_BIGINT = -(2n ** 63n);
const MAX_BIGINT = 2n ** 64n - 1n;

/** Deepest nesting of a value checked (and decodable: msgpack-bounds allows 64). */
const MAX_VALUE_DEPTH = 64;

/** The dtype a bare typed array would be as a tensor, for the hint in the refusal. */
const TYPED_ARRAY_DTYPES: Readonly<Record<string, string>> = {
  Float64Array: "float64",
  Float32Array: "float32",
  Float16Array: "float16",
  Int32Array: "int32",
  Int16Array: "int16",
  Int8Array: "int8",
  Uint8ClampedArray: "uint8",
  BigInt64Array: "int64",
};

function className(value: object): string {
  return (value as { constructor?: { name?: string } }).constructor?.name ?? "Object";
}

/**
 * What is wrong with a value a state dict holds, or undefined when it round-trips as itself: a
 * number (any, `-0` and `NaN` included), string, boolean, `null`, `undefined` (comes back `null`),
 * a `bigint` from -2^63 to 2^64-1, a `Uint8Array` (exactly; a `Buffer` is refused), a valid
 * `Date`, and arrays and plain objects of these.
 */
function problemOf(value: unknown, depth: number): Problem | undefined {
  const what = whatIsWrong(value, depth);
  return typeof what === "string" ? { at: "", what } : what;
}

/** What is wrong ({@link problemOf}) and where inside the value (`[1]["k"]`, empty for the value itself). */
interface Problem {
  readonly at: string;
  readonly what: string;
}

function whatIsWrong(value: unknown, depth: number): string | Problem | undefined {
  switch (typeof value) {
    case "number":
    case "string":
    case "boolean":
    case "undefined":
      return undefined;
    case "bigint":
      return value >= MIN_BIGINT && value <= MAX_BIGINT
        ? undefined
        : `the bigint ${value}, outside int64/uint64 [-2^63, 2^64-1]: store it as a string`;
    case "function":
      return "a function: a state dict holds data only";
    case "symbol":
      return "a symbol: a state dict holds data only";
  }
  if (value === null) return undefined;
  if (depth > MAX_VALUE_DEPTH) return `a value nested deeper than ${MAX_VALUE_DEPTH}`;
  const v = value as object;
  const proto = Object.getPrototypeOf(v);
  if (ArrayBuffer.isView(v)) {
    if (proto === Uint8Array.prototype) return undefined;
    const name = className(v);
    const dtype = TYPED_ARRAY_DTYPES[name];
    if (dtype) {
      const n = (v as unknown as { length: number }).length;
      return `a bare ${name}, which would come back as a Uint8Array of its bytes: use tensor("${dtype}", [${n}], data)`;
    }
    return `a ${name}, which would come back as a plain Uint8Array: use new Uint8Array(bytes) or tensor(...)`;
  }
  if (
    v instanceof ArrayBuffer ||
    (typeof SharedArrayBuffer !== "undefined" && v instanceof SharedArrayBuffer)
  )
    return `an ${className(v)}: wrap it as new Uint8Array(buffer) or tensor(...)`;
  if (v instanceof Map) return "a Map, which would come back as a plain object: use a plain object";
  if (v instanceof Set) return "a Set, which would come back as an empty object: use an array";
  if (v instanceof Date)
    return proto === Date.prototype && !Number.isNaN(v.getTime())
      ? undefined
      : "an invalid Date: use a valid Date or null";
  if (Array.isArray(v)) {
    if (proto !== Array.prototype) return `an instance of ${className(v)}: use a plain array`;
    for (let i = 0; i < v.length; i++) {
      const p = problemOf(v[i], depth + 1);
      if (p) return { at: `[${i}]${p.at}`, what: p.what };
    }
    return undefined;
  }
  if (proto === Object.prototype || proto === null) {
    for (const key of Object.keys(v)) {
      const p = problemOf((v as Record<string, unknown>)[key], depth + 1);
      if (p) return { at: `[${JSON.stringify(key)}]${p.at}`, what: p.what };
    }
    return undefined;
  }
  return `an instance of class ${className(v)}, which would come back as a plain object: use a plain object of its fields, or tensor(...) for numbers`;
}

/**
 * Checks that a non-tensor state-dict value round-trips as itself (the same type and value), and
 * refuses it otherwise rather than store something else: a bare typed array other than
 * `Uint8Array` (use `tensor(...)`), a `Buffer`, `DataView` or `ArrayBuffer`, a `Map`, `Set`,
 * class instance, function or symbol, an invalid `Date`, a bigint outside int64/uint64.
 *
 * Values that round-trip: numbers (`-0`, `NaN` and infinities included), strings, booleans, `null`,
 * `bigint` (-2^63 … 2^64-1), `Uint8Array`, valid `Date`s, and arrays and plain objects of these;
 * `undefined` comes back as `null`.
 *
 * @param value - the value (a leaf of a flattened state dict).
 * @param fqn - its fqn, for the message.
 * @throws {@link CheckpointError} `INVALID_STATE_DICT`: "Expected "fqn" to be a tensor or a
 * value that round-trips (…), got a bare Float32Array…: use tensor("float32", [3], data)".
 */
export function assertStateDictValue(value: unknown, fqn: string): void {
  const problem = problemOf(value, 0);
  if (problem) {
    const where = problem.at ? `"${fqn}" (at ${problem.at})` : `"${fqn}"`;
    throw new CheckpointError(
      "INVALID_STATE_DICT",
      `Expected ${where} to be a tensor or a value that round-trips (number, string, boolean, null, bigint, Uint8Array, Date, or arrays of them), got ${problem.what}`,
    );
  }
}

/**
 * What msgpack would get wrong in a value without saying so: whether it holds a `-0` (an integral
 * number is written as an int, which has no sign) and the first bigint wider than 64 bits (cut to
 * its low 64 bits).
 */
function scan(value: unknown, found: { negativeZero: boolean; wide?: bigint }, depth = 0): void {
  if (typeof value === "number") {
    if (Object.is(value, -0)) found.negativeZero = true;
  } else if (typeof value === "bigint") {
    if ((value < MIN_BIGINT || value > MAX_BIGINT) && found.wide === undefined) found.wide = value;
  } else if (
    typeof value === "object" &&
    value !== null &&
    depth <= MAX_VALUE_DEPTH &&
    !ArrayBuffer.isView(value)
  ) {
    for (const v of Array.isArray(value) ? value : Object.values(value)) scan(v, found, depth + 1);
  }
}

/**
 * Encodes a non-tensor state-dict value as msgpack, the payload of a `bytes` item.
 *
 * What {@link assertStateDictValue} accepts round-trips as itself; `undefined` becomes `null`. A
 * value holding `-0` has its numbers written as floats (msgpack's ints have no `-0`). Values
 * converted from other formats (a torch checkpoint's tuples) are encoded as msgpack sees them.
 *
 * @param value - the value.
 * @param fqn - its fqn, for the error message.
 * @throws {@link CheckpointError} `INVALID_STATE_DICT` when msgpack cannot encode it (e.g. a
 * function), or it holds a bigint outside int64/uint64 (which msgpack would cut to 64 bits).
 */
export function encodeValue(value: unknown, fqn: string): Uint8Array {
  const found: { negativeZero: boolean; wide?: bigint } = { negativeZero: false };
  scan(value, found);
  if (found.wide !== undefined) {
    throw new CheckpointError(
      "INVALID_STATE_DICT",
      `Expected "${fqn}" to hold bigints within int64/uint64 [-2^63, 2^64-1], got ${found.wide}`,
    );
  }
  try {
    return encode(value, { useBigInt64: true, forceIntegerToFloat: found.negativeZero });
  } catch (cause) {
    throw new CheckpointError(
      "INVALID_STATE_DICT",
      `Expected "${fqn}" to be a msgpack-encodable value, got ${describe(value)}`,
      { cause },
    );
  }
}

/**
 * Decodes a `bytes` item written by {@link encodeValue}.
 *
 * @param bytes - the item's bytes.
 * @param fqn - its fqn, for the error message.
 * @throws {@link CheckpointError} `MALFORMED_DATA` when the bytes are not one valid msgpack value
 * within the decoder's limits (nesting at most 64 deep, no container longer than its bytes).
 */
export function decodeValue(bytes: Uint8Array, fqn: string): unknown {
  try {
    assertMsgpackWithinLimits(bytes, `value "${fqn}"`);
  } catch (cause) {
    throw new CheckpointError("MALFORMED_DATA", (cause as MetadataError).message, { cause });
  }
  try {
    // Decode a private copy: msgpack returns binary values as views of its input, which must
    // neither alias the reader's buffers nor be Buffers (a plain Uint8Array was saved).
    return decode(new Uint8Array(bytes), { useBigInt64: true });
  } catch (cause) {
    throw new CheckpointError(
      "MALFORMED_DATA",
      `Expected "${fqn}" to hold a msgpack value, but it does not decode`,
      {
        cause,
      },
    );
  }
}

function describe(value: unknown): string {
  if (typeof value === "object" && value !== null)
    return `an object of class ${value.constructor?.name ?? "null"}`;
  return `a ${typeof value}`;
}
