import {
  CheckpointError,
  CheckpointException,
  ChecksumMismatchError,
  MetadataError,
  NotFoundError,
} from "../errors.js";

/**
 * An error as it crosses to another thread: its class (the nearest one this codec knows), its
 * message and stack, its cause, and its own enumerable fields (`code`, `step`, `failures`, `fqn`,
 * `path`…), with the errors inside them encoded the same way.
 */
export interface EncodedError {
  readonly encodedError: true;
  readonly cls: string;
  readonly message: string;
  readonly stack?: string;
  readonly cause?: unknown;
  readonly fields: Record<string, unknown>;
}

/** The classes an error is rebuilt as, most derived first. */
const CLASSES: readonly (readonly [string, abstract new (...args: never[]) => Error])[] = [
  ["CheckpointException", CheckpointException],
  ["ChecksumMismatchError", ChecksumMismatchError],
  ["MetadataError", MetadataError],
  ["NotFoundError", NotFoundError],
  ["CheckpointError", CheckpointError],
  ["TypeError", TypeError],
  ["RangeError", RangeError],
  ["SyntaxError", SyntaxError],
  ["Error", Error],
];

function isEncodedError(value: unknown): value is EncodedError {
  return typeof value === "object" && value !== null && (value as EncodedError).encodedError === true;
}

/** A value with every error inside it (an array's, a plain object's) encoded; what cannot be cloned becomes its string. */
function encodeValue(value: unknown, depth: number): unknown {
  if (value instanceof Error) return encodeError(value, depth);
  if (depth > 8) return undefined;
  if (Array.isArray(value)) return value.map((v) => encodeValue(v, depth + 1));
  if (typeof value === "object" && value !== null && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, encodeValue(v, depth + 1)]));
  }
  if (typeof value === "function" || typeof value === "symbol") return String(value);
  try {
    structuredClone(value);
    return value;
  } catch {
    return String(value);
  }
}

function decodeValue(value: unknown): unknown {
  if (isEncodedError(value)) return decodeError(value);
  if (Array.isArray(value)) return value.map(decodeValue);
  if (typeof value === "object" && value !== null && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, decodeValue(v)]));
  }
  return value;
}

/**
 * Encodes whatever a save threw for `postMessage`, so that {@link decodeError} on the other side
 * rebuilds it with its class (`CheckpointException`, `ChecksumMismatchError`…), `code`, message,
 * stack, cause and fields (a `CheckpointException`'s `step` and per-rank `failures`).
 *
 * @param error - what was thrown (an `Error`, or any value).
 * @param depth - how deep in causes this is (they are followed 8 deep). @default 0
 */
export function encodeError(error: unknown, depth = 0): EncodedError {
  if (!(error instanceof Error)) {
    return { encodedError: true, cls: "Error", message: String(error), fields: {} };
  }
  const cls = CLASSES.find(([, C]) => error instanceof C)?.[0] ?? "Error";
  const fields: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(error)) fields[key] = encodeValue(value, depth + 1);
  const cause = "cause" in error && depth < 8 ? { cause: encodeValue(error.cause, depth + 1) } : {};
  return {
    encodedError: true,
    cls,
    message: error.message,
    ...(error.stack !== undefined ? { stack: error.stack } : {}),
    ...cause,
    fields,
  };
}

/**
 * Rebuilds an error {@link encodeError} encoded: an instance of its class (by prototype, without
 * running the constructor), with its message, stack, cause and fields as they were.
 *
 * @param encoded - the encoded error.
 */
export function decodeError(encoded: EncodedError): Error {
  const C = CLASSES.find(([name]) => name === encoded.cls)?.[1] ?? Error;
  const error = Object.create(C.prototype) as Error;
  const hidden = (key: string, value: unknown) =>
    Object.defineProperty(error, key, { value, writable: true, configurable: true, enumerable: false });
  hidden("message", encoded.message);
  if (encoded.stack !== undefined) hidden("stack", encoded.stack);
  if ("cause" in encoded) hidden("cause", decodeValue(encoded.cause));
  for (const [key, value] of Object.entries(encoded.fields)) {
    Object.defineProperty(error, key, {
      value: decodeValue(value),
      writable: true,
      configurable: true,
      enumerable: true,
    });
  }
  return error;
}

/**
 * Encodes an abort reason for another thread: an error through {@link encodeError}, anything
 * cloneable as it is, else its string.
 *
 * @param reason - `signal.reason`.
 */
export function encodeReason(reason: unknown): unknown {
  return encodeValue(reason, 0);
}

/**
 * Decodes what {@link encodeReason} encoded.
 *
 * @param encoded - the encoded reason.
 */
export function decodeReason(encoded: unknown): unknown {
  return decodeValue(encoded);
}
