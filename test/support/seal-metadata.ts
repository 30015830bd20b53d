import { crc32c } from "@node-rs/crc32";

/** `.metadata` bytes for a msgpack body: the body and its CRC-32C trailer, as the writer seals it. */
export function sealMetadata(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(body.byteLength + 4);
  out.set(body);
  new DataView(out.buffer).setUint32(body.byteLength, crc32c(body), true);
  return out;
}
