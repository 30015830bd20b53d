import { readSafetensorsFolder } from "../formats/safetensors/folder-reader.js";
import { validateMetadata } from "../formats/validate-metadata.js";
import type { Metadata } from "../plan/metadata.js";
import type { FileSystemBase } from "./filesystem-base.js";
import { checkpointFolder } from "./read-checkpoint-metadata.js";

export {
  DCP_SHARDING_INFO_KEY,
  SAFETENSORS_CHECKSUMS_FILE,
  SAFETENSORS_INDEX_FILE,
} from "../formats/safetensors/folder-reader.js";

/**
 * Builds checkpoint metadata from a folder of `*.safetensors` files through a backend: the
 * safetensors checkpoint format's reader (`readSafetensorsFolder`, as DCP's
 * `HuggingFaceStorageReader`), checked by `validateMetadata`.
 *
 * @param fs - the backend.
 * @param folder - the folder (or S3 prefix).
 * @param signal - aborts the reads.
 * @returns the metadata, or `undefined` when the folder holds no safetensors files.
 * @throws {@link MetadataError} for a malformed header, index or sidecar, a dtype that differs
 * between shards, or chunks that do not tile a tensor; `UNSUPPORTED_DTYPE` for an F4/F6 tensor
 * whose last dimension does not split into whole packed elements.
 */
export async function readSafetensorsMetadata(
  fs: FileSystemBase,
  folder: string,
  signal?: AbortSignal,
): Promise<Metadata | undefined> {
  const metadata = await readSafetensorsFolder(checkpointFolder(fs, folder, signal));
  return metadata && validateMetadata(metadata, { what: "safetensors folder" });
}
