import { CheckpointError } from "./errors.js";
import type {
  CheckpointFormat,
  CheckpointWriteOptions,
  CheckpointWriteSummary,
} from "./formats/checkpoint-format.js";
import { checkpointFormatNamed } from "./formats/checkpoint-formats.js";
import {
  checkSafetensorsWriteOptions,
  type ExportSummary,
  type SafetensorsWriteOptions,
} from "./formats/safetensors/folder-writer.js";
import { load } from "./load.js";
import { locate } from "./ops/locate.js";
import { createStorageReader } from "./storage/registry.js";
import { writeWholeFile } from "./storage/write-whole-file.js";

export {
  DEFAULT_MAX_SHARD_SIZE,
  EXPORT_BATCH_BYTES,
  type ExportSummary,
  VALUES_METADATA_KEY,
} from "./formats/safetensors/folder-writer.js";

/** Options of {@link exportSafetensors}: the safetensors format writer's. */
export type ExportSafetensorsOptions = SafetensorsWriteOptions;

/**
 * Writes the checkpoint at `src` (any format dcpjs reads; a folder or a URI a registered backend
 * takes) as a checkpoint of a format that has its own writer ({@link CheckpointFormat.write}),
 * at `dst`: the source's metadata and a way to load its entries are handed to the format, which
 * writes its files into `dst` (created).
 *
 * @param format - the output format (e.g. the registered `safetensors`).
 * @param src - the checkpoint to read.
 * @param dst - the destination folder or URI.
 * @param options - see {@link CheckpointWriteOptions}, plus the format's own.
 * @returns what the format wrote.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` for a format without `write`; the errors of reading the source (`INCOMPLETE_CHECKPOINT`, `CHECKSUM_MISMATCH`, …), of
 * the format's writer and of the destination.
 */
export async function writeWithFormat(
  format: CheckpointFormat,
  src: string,
  dst: string,
  options: CheckpointWriteOptions = {},
): Promise<CheckpointWriteSummary> {
  const { signal } = options;
  if (!format.write)
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected a checkpoint format with its own writer, got ${format.name} (written by FileSystemWriter)`,
    );
  const reader = await createStorageReader(src);
  const { fs, root } = locate(dst, { writable: true });
  await fs.mkdir(root);
  reader.reset(src);
  const metadata = await reader.readMetadata(signal);
  return format.write(
    {
      metadata,
      load: async (target, s) => {
        await load(target, { storageReader: reader, ...(s ? { signal: s } : {}) });
      },
    },
    { writeFile: (name, parts) => writeWholeFile(fs, fs.concatPath(root, name), parts) },
    options,
  );
}

/**
 * Exports a checkpoint (any format dcpjs reads) to safetensors, as Hugging Face lays it out — the
 * safetensors checkpoint format's writer (`writeSafetensorsFolder`: consolidated
 * `model-0000k-of-0000N.safetensors` files plus `model.safetensors.index.json` written last, or
 * with `sharded` the `save_distributed` layout; at most `batchBytes` of tensors held at once), as
 * `convertCheckpoint(src, dst, { to: "safetensors" })` does.
 *
 * @param src - the checkpoint: a folder or `s3://` URI.
 * @param dst - the destination folder or `s3://` prefix.
 * @param options - see {@link ExportSafetensorsOptions}.
 * @returns what was written.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` for a `maxShardSize` or `batchBytes` below 1
 * (before anything is read); `UNSUPPORTED_DTYPE` naming the tensor, before anything is written,
 * for a dtype safetensors lacks (`complex32`, `complex128`) or one dcpjs cannot hold (`torch.qint8`
 * …); the errors of reading the source (`INCOMPLETE_CHECKPOINT`, `CHECKSUM_MISMATCH`, …) and of
 * the destination.
 */
export async function exportSafetensors(
  src: string,
  dst: string,
  options: ExportSafetensorsOptions = {},
): Promise<ExportSummary> {
  checkSafetensorsWriteOptions(options);
  return (await writeWithFormat(checkpointFormatNamed("safetensors"), src, dst, options)) as ExportSummary;
}
