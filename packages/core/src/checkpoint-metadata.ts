import type { Metadata } from "./metadata.js";
import { decodeMetadata } from "./metadata-codec.js";
import { decodeTorchMetadata, PICKLE_PROTO } from "./torch-format/torch-metadata.js";

/**
 * Decodes a `.metadata` file of either format, told apart by its first byte: a pickle (PROTO,
 * `0x80`) is PyTorch DCP's, read with the restricted unpickler; anything else is dcpjs's msgpack.
 *
 * @param bytes - the file's bytes.
 * @throws {@link MetadataError} as `decodeMetadata` or `decodeTorchMetadata`.
 */
export function decodeCheckpointMetadata(bytes: Uint8Array): Metadata {
  return bytes[0] === PICKLE_PROTO ? decodeTorchMetadata(bytes) : decodeMetadata(bytes);
}
