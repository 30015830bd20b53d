import { decode, encode } from "@msgpack/msgpack";
import { CheckpointError, type MetadataError } from "../errors.js";
import { assertMsgpackWithinLimits } from "./msgpack-bounds.js";

/**
 * Encodes a non-tensor state-dict value as msgpack, the payload of a `bytes` item.
 *
 * Numbers, strings, booleans, null, `bigint` (as int64), `Uint8Array`, `Date`, arrays and plain
 * objects round-trip; `undefined` becomes `null`.
 *
 * @param value - the value.
 * @param fqn - its fqn, for the error message.
 * @throws {@link CheckpointError} `INVALID_STATE_DICT` when msgpack cannot encode it (e.g. a
 * function, or a bigint outside the int64 range).
 */
export function encodeValue(value: unknown, fqn: string): Uint8Array {
  try {
    return encode(value, { useBigInt64: true });
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
