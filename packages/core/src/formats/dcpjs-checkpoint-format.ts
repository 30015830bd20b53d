import type { CheckpointFormat } from "./checkpoint-format.js";
import { decodeRawMetadata, encodeMetadata } from "./metadata-codec.js";

/**
 * dcpjs's own checkpoint format: raw little-endian items, each with a CRC-32 (and running
 * checksums per block), and a msgpack `.metadata` of layout version 2 (version 1 still read)
 * sealed by a CRC-32C trailer (docs/format.md). It has no magic of its own to check first: it
 * reads every `.metadata` the formats asked before it left, and reports damage as its own.
 */
export const DCPJS_CHECKPOINT_FORMAT: CheckpointFormat = {
  name: "dcpjs",
  itemFormat: "dcpjs",
  decodeMetadata: decodeRawMetadata,
  encodeMetadata,
};
