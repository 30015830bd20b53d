import type { CheckpointFormat } from "../checkpoint-format.js";
import { readSafetensorsFolder } from "./folder-reader.js";
import { writeSafetensorsFolder } from "./folder-writer.js";

/**
 * Hugging Face's safetensors layout as a checkpoint format, as DCP's `HuggingFaceStorageReader` /
 * `HuggingFaceStorageWriter`: a folder of `*.safetensors` files (with or without
 * `model.safetensors.index.json`, consolidated or `DCP_SHARDING_INFO`-sharded) read as a
 * checkpoint of raw items, and written by {@link writeSafetensorsFolder}. It has no `.metadata`:
 * it is asked only when no format found one.
 */
export const SAFETENSORS_CHECKPOINT_FORMAT: CheckpointFormat = {
  name: "safetensors",
  itemFormat: "dcpjs",
  what: "safetensors folder",
  readMetadata: readSafetensorsFolder,
  write: writeSafetensorsFolder,
};
