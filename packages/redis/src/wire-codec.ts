import { Decoder, Encoder, ExtensionCodec } from "@msgpack/msgpack";

/** msgpack extension types used on the wire. */
const MAP_EXT = 1;
const SET_EXT = 2;
const ERROR_EXT = 3;

/**
 * The largest encoded value after which the encoder is kept, bytes (1 MiB): an encode with a
 * larger result leaves a fresh encoder behind, so one large value (a gathered plan, the committed
 * metadata) does not pin its buffer for the life of the process; the kept buffer stays under
 * about twice this (msgpack grows it to twice what it needs).
 */
const WIRE_BUFFER_KEPT_BYTES = 2 ** 20;

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

const options = { extensionCodec: codec, useBigInt64: true } as const;

/*
 * One encoder and one decoder for every call, instead of msgpack's `encode()`/`decode()`, which
 * build both anew per call (a fresh 2 KiB buffer and state each time: most of the cost of a small
 * message, and a gather of 4,096 ranks decodes 4,096 of them). Re-entry — an extension's codec
 * calling encodeWire/decodeWire while the outer call runs — is safe: @msgpack/msgpack 3.x's
 * `Encoder.encode` and `Decoder.decode` run a clone of themselves when entered twice.
 */
let encoder = new Encoder(options);
const decoder = new Decoder(options);

/**
 * Encodes a collective's value for another process: msgpack, with `Map`, `Set`, `bigint` (int64)
 * and `Error` (name, message, code) kept; `undefined` becomes `null`.
 *
 * @param value - plain data.
 * @returns a copy of the encoded bytes, the caller's own.
 */
export function encodeWire(value: unknown): Uint8Array {
  const bytes = encoder.encode(value);
  // The encoder keeps the buffer it grew: drop one that grew past the limit.
  if (bytes.byteLength > WIRE_BUFFER_KEPT_BYTES) encoder = new Encoder(options);
  return bytes;
}

/** msgpack's nil: one byte, decodes to `null`. */
const NIL = Uint8Array.of(0xc0);
/** Calls of {@link decodeWire} under way: more than one while an extension's codec decodes. */
let decoding = 0;

/**
 * Decodes what {@link encodeWire} produced.
 *
 * @param bytes - the encoded value.
 */
export function decodeWire(bytes: Uint8Array): unknown {
  decoding++;
  try {
    return decoder.decode(bytes);
  } finally {
    // The decoder keeps a view of its last input (which may pin a large reply buffer): once the
    // outermost call is done, point it at a constant instead.
    if (--decoding === 0) decoder.decode(NIL);
  }
}
