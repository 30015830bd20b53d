import { MetadataError } from "../../errors.js";
import type { ObjectPath } from "../../model/state-dict.js";
import type {
  ChunkStorageMetadata,
  Metadata,
  StorageInfo,
  StorageMetadataEntry,
} from "../../plan/metadata.js";
import type { CheckpointFolder, CheckpointFormat } from "../checkpoint-format.js";
import { decodeRawTorchMetadata, PICKLE_PROTO, TORCH_METADATA_WHAT } from "./torch-metadata.js";
import { encodeTorchMetadata } from "./torch-write.js";

/** Most `__{rank}.metadata` files read from a checkpoint saved without rank coordination. */
export const MAX_RANK_METADATA_FILES = 65_536;

/**
 * Merges the per-rank metadata files a save without rank coordination writes (PyTorch's
 * `use_collectives=False`: `__{rank}.metadata`, each describing that rank's items) into one:
 * tensors' chunks united (a chunk saved by several ranks counted once), values, storage and
 * planner data united. The result is raw: `validateMetadata` checks that the chunks tile.
 *
 * @param parts - the ranks' metadata, rank 0 first.
 * @throws {@link MetadataError} when ranks disagree on a tensor's dtype or size.
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
  return {
    version: parts[0]?.version ?? "1.0.0",
    stateDictMetadata,
    plannerData,
    storageData,
    storageMeta: { ...parts[0]?.storageMeta },
  };
}

/** The merged `__{rank}.metadata` files (ranks 0, 1, … until one is missing), or undefined when there is none. */
async function readRankMetadata(folder: CheckpointFolder): Promise<Metadata | undefined> {
  const parts: Metadata[] = [];
  for (let rank = 0; rank < MAX_RANK_METADATA_FILES; rank++) {
    const bytes = await folder.readFile(`__${rank}.metadata`);
    if (bytes === undefined) break;
    parts.push(decodeRawTorchMetadata(bytes));
  }
  return parts.length > 0 ? mergeRankMetadata(parts) : undefined;
}

/**
 * PyTorch DCP's checkpoint format: every item a `torch.save` archive (zip CRC-32s), a pickled
 * `.metadata` (its magic: a pickle's PROTO byte first) read with a restricted unpickler — or,
 * saved without rank coordination, per-rank `__{rank}.metadata` files merged.
 */
export const TORCH_CHECKPOINT_FORMAT: CheckpointFormat = {
  name: "torch",
  itemFormat: "torch",
  what: TORCH_METADATA_WHAT,
  recognizes: (bytes) => bytes[0] === PICKLE_PROTO,
  decodeMetadata: (bytes) => decodeRawTorchMetadata(bytes),
  encodeMetadata: encodeTorchMetadata,
  readMetadata: readRankMetadata,
};
