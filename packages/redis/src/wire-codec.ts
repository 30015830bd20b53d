import { decode, ExtensionCodec, encode } from "@msgpack/msgpack";

/** msgpack extension types used on the wire. */
const MAP_EXT = 1;
const SET_EXT = 2;
const ERROR_EXT = 3;

const codec = new ExtensionCodec();
codec.register({
  type: MAP_EXT,
  encode: (value: unknown) => (value instanceof Map ? encodeWire([...value]) : null),
  decode: (data: Uint8Array) => new Map(decodeWire(data) as [unknown, unknown][]),
});
codec.register({
  type: SET_EXT,
  encode: (value: unknown) => (value instanceof Set ? encodeWire([...value]) : null),
  decode: (data: Uint8Array) => new Set(decodeWire(data) as unknown[]),
});
codec.register({
  type: ERROR_EXT,
  encode: (value: unknown) => {
    if (!(value instanceof Error)) return null;
    const code = (value as { code?: unknown }).code;
    return encodeWire({
      name: value.name,
      message: value.message,
      ...(typeof code === "string" ? { code } : {}),
    });
  },
  decode: (data: Uint8Array) => {
    const { name, message, code } = decodeWire(data) as { name: string; message: string; code?: string };
    const error = new Error(message);
    error.name = name;
    if (code !== undefined) Object.assign(error, { code });
    return error;
  },
});

/**
 * Encodes a collective's value for another process: msgpack, with `Map`, `Set`, `bigint` (int64)
 * and `Error` (name, message, code) kept; `undefined` becomes `null`.
 *
 * @param value - plain data.
 */
export function encodeWire(value: unknown): Uint8Array {
  return encode(value, { extensionCodec: codec, useBigInt64: true });
}

/**
 * Decodes what {@link encodeWire} produced.
 *
 * @param bytes - the encoded value.
 */
export function decodeWire(bytes: Uint8Array): unknown {
  return decode(bytes, { extensionCodec: codec, useBigInt64: true });
}
