import { MetadataError } from "../errors.js";
import type { ObjectPath } from "../model/state-dict.js";
import type { ChunkStorageMetadata, Metadata, StorageInfo, StorageMetadataEntry } from "../plan/metadata.js";
import { assertChunksTileAll, decodeMetadata } from "./metadata-codec.js";
import { decodeTorchMetadata, PICKLE_PROTO } from "./torch/torch-metadata.js";

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

/**
 * Merges the per-rank metadata files a save without rank coordination writes (PyTorch's
 * `use_collectives=False`: `__{rank}.metadata`, each describing that rank's items) into one:
 * tensors' chunks united (a chunk saved by several ranks counted once), values, storage and
 * planner data united, and the chunks checked to tile every tensor.
 *
 * @param parts - the ranks' metadata, rank 0 first.
 * @throws {@link MetadataError} when ranks disagree on a tensor's dtype or size, or the chunks do
 * not tile a tensor.
 */
export function mergeRankMetadata(parts: readonly Metadata[]): Metadata {
  const stateDictMetadata = new Map<string, StorageMetadataEntry>();
  const storageData = new Map<string, StorageInfo>();
  const plannerData = new Map<string, ObjectPath>();
  for (const part of parts) {
    for (const [fqn, e] of part.stateDictMetadata) {
      const seen = stateDictMetadata.get(fqn);
      if (!seen) {
        stateDictMetadata.set(fqn, e.type === "tensor" ? { ...e, chunks: [...e.chunks] } : e);
        continue;
      }
      if (
        seen.type !== e.type ||
        (seen.type === "tensor" &&
          e.type === "tensor" &&
          (seen.properties.dtype !== e.properties.dtype || seen.size.join() !== e.size.join()))
      ) {
        throw new MetadataError(`Malformed per-rank metadata: ranks disagree on "${fqn}"`);
      }
      if (seen.type === "tensor" && e.type === "tensor") {
        for (const c of e.chunks)
          if (!seen.chunks.some((s) => s.offsets.join() === c.offsets.join()))
            (seen.chunks as ChunkStorageMetadata[]).push(c);
      }
    }
    for (const [k, v] of part.storageData) if (!storageData.has(k)) storageData.set(k, v);
    for (const [k, v] of part.plannerData) plannerData.set(k, v);
  }
  assertChunksTileAll(stateDictMetadata);
  return {
    version: parts[0]?.version ?? "1.0.0",
    stateDictMetadata,
    plannerData,
    storageData,
    storageMeta: { ...parts[0]?.storageMeta },
  };
}
