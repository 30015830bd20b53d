// Finding and reading a checkpoint's metadata: `.metadata`, else PyTorch's per-rank
// `__{rank}.metadata` files, else a folder of safetensors files.
import { CheckpointError, MetadataError, NotFoundError, throwIfAborted } from "../errors.js";
import { decodeCheckpointMetadata, mergeRankMetadata } from "../formats/checkpoint-metadata.js";
import { computeChecksum } from "../formats/checksum.js";
import type { Metadata } from "../plan/metadata.js";
import type { FileSystemBase } from "./filesystem-base.js";
import { METADATA_FILE, rankMetadataFile } from "./layout.js";
import { resolveReadCapabilities } from "./read-schedule.js";
import { readWholeFile } from "./read-whole-file.js";
import { readSafetensorsMetadata } from "./safetensors-folder.js";

/** Most `__{rank}.metadata` files read from a checkpoint saved without rank coordination. */
export const MAX_RANK_METADATA_FILES = 65_536;

/** A checkpoint's metadata and which commit it is. */
export interface CheckpointMetadataRead {
  readonly metadata: Metadata;
  /**
   * Which committed checkpoint was read from `.metadata`: its save id, or its length and CRC-32
   * when it has none (PyTorch's); undefined for per-rank metadata and safetensors.
   */
  readonly committed: string | undefined;
}

/**
 * Reads the metadata of the checkpoint at `path`: `.metadata`; without it, PyTorch's per-rank
 * `__{rank}.metadata` files merged (a save without rank coordination); without those, a folder
 * of `*.safetensors` files (Hugging Face's layout, as DCP's `HuggingFaceStorageReader`).
 *
 * @throws {@link CheckpointError} `INCOMPLETE_CHECKPOINT` when there is none of them (the save
 * never committed, or the path is wrong); {@link MetadataError} when one is malformed (read again
 * up to the backend's `rereadsOnMismatch` times first).
 */
export async function readCheckpointMetadata(
  fs: FileSystemBase,
  path: string,
  signal?: AbortSignal,
): Promise<CheckpointMetadataRead> {
  throwIfAborted(signal);
  const file = fs.concatPath(path, METADATA_FILE);
  const read = () => readWholeFile(fs, file, signal ? { signal } : {});
  let bytes: Uint8Array;
  try {
    bytes = await read();
  } catch (error) {
    if (error instanceof NotFoundError) {
      // Saved without rank coordination (PyTorch's use_collectives=False): __{rank}.metadata files.
      const perRank = await rankMetadata(fs, path, signal);
      if (perRank) return { metadata: perRank, committed: undefined };
      // Not a dcpjs checkpoint: perhaps a folder of safetensors files (Hugging Face layout).
      const safetensors = await readSafetensorsMetadata(fs, path, signal);
      if (safetensors) return { metadata: safetensors, committed: undefined };
      throw new CheckpointError(
        "INCOMPLETE_CHECKPOINT",
        `Expected a committed checkpoint at ${path} (a ${METADATA_FILE} file), found none: the save did not complete, or the path is wrong`,
        { cause: error },
      );
    }
    throw error;
  }
  for (let attempt = 0; ; attempt++) {
    try {
      const metadata = decodeCheckpointMetadata(bytes);
      const committed =
        metadata.storageMeta.saveId ?? `${bytes.byteLength}:${computeChecksum("crc32", bytes)}`;
      return { metadata, committed };
    } catch (error) {
      // A damaged response (CRC trailer or pickle) is requested again where the backend says it helps.
      const rereads = resolveReadCapabilities(fs.readCapabilities).rereadsOnMismatch;
      if (!(error instanceof MetadataError) || attempt >= rereads) throw error;
      bytes = await read();
    }
  }
}

/** The merged `__{rank}.metadata` files (ranks 0, 1, … until one is missing), or undefined when there is none. */
async function rankMetadata(
  fs: FileSystemBase,
  path: string,
  signal?: AbortSignal,
): Promise<Metadata | undefined> {
  const parts: Metadata[] = [];
  for (let rank = 0; rank < MAX_RANK_METADATA_FILES; rank++) {
    const file = fs.concatPath(path, rankMetadataFile(rank));
    try {
      parts.push(decodeCheckpointMetadata(await readWholeFile(fs, file, signal ? { signal } : {})));
    } catch (error) {
      if (error instanceof NotFoundError) break;
      throw error;
    }
  }
  return parts.length > 0 ? mergeRankMetadata(parts) : undefined;
}

/**
 * Whether the `.metadata` committed at `path` now refers to `relativePath` — undefined when there
 * is none any more, or it cannot be read (a load that lost a data file tells a newer commit,
 * `CHECKPOINT_SUPERSEDED`, from damage this way).
 */
export async function committedRefersTo(
  fs: FileSystemBase,
  path: string,
  relativePath: string,
): Promise<boolean | undefined> {
  try {
    const now = decodeCheckpointMetadata(await readWholeFile(fs, fs.concatPath(path, METADATA_FILE)));
    return [...now.storageData.values()].some((i) => i.relativePath === relativePath);
  } catch {
    return undefined;
  }
}
