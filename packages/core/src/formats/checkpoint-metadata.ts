import type { Metadata } from "../plan/metadata.js";
import { decodeCommittedMetadata } from "./checkpoint-formats.js";

export { mergeRankMetadata } from "./torch/torch-checkpoint-format.js";

/**
 * Decodes a `.metadata` file of any registered checkpoint format — the first that recognizes it
 * by its own magic (PyTorch DCP's pickle, else dcpjs's msgpack) — and validates it.
 *
 * @param bytes - the file's bytes.
 * @throws {@link MetadataError} as the format's decoder and `validateMetadata`.
 */
export function decodeCheckpointMetadata(bytes: Uint8Array): Metadata {
  return decodeCommittedMetadata(bytes).metadata;
}
