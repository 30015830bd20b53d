import { collectWorkerHeaps, workerThreadsRunning } from "#platform";
import { CheckpointError, throwIfAborted } from "./errors.js";
import { writeWithFormat } from "./export-safetensors.js";
import { checkpointFormatNamed } from "./formats/checkpoint-formats.js";
import { loadStateDictFromKeys } from "./load.js";
import { DTYPE_BYTES } from "./model/dtype.js";
import type { ObjectPath } from "./model/state-dict.js";
import { numel } from "./model/tensor.js";
import type { Metadata, StorageMetadataEntry, WriteResult } from "./plan/metadata.js";
import type { SavePlanner } from "./plan/planner.js";
import { DefaultSavePlanner } from "./plan/save-planner.js";
import { FileSystemWriter } from "./storage/filesystem-writer.js";
import { createStorageReader, createStorageWriter } from "./storage/registry.js";
import { isFileSystemBacked, type StorageWriter } from "./storage/storage.js";
import { assertIntegerInRange } from "./validate.js";

/** Default {@link ConvertOptions.windowBytes}: most bytes of tensors a conversion holds at once, beyond the largest tensor. 256 MiB. */
export const DEFAULT_CONVERT_WINDOW_BYTES = 256 * 1024 * 1024;

/** The formats {@link convertCheckpoint} writes: the built-in ones, or another registered checkpoint format's name. */
export type ConvertFormat = "dcpjs" | "torch" | "safetensors" | (string & {});

/** One batch of a conversion, as {@link ConvertOptions.onBatch} reports it. */
export interface ConvertBatch {
  /** Its number, from 0. */
  readonly index: number;
  /** How many batches the conversion has. */
  readonly count: number;
  /** The entries (fqns) it holds. */
  readonly keys: readonly string[];
  /** Its tensors' bytes: at most the window, or one larger tensor alone. */
  readonly bytes: number;
}

/** Options of {@link convertCheckpoint}. */
export interface ConvertOptions {
  /** The output format: a registered checkpoint format's name. @default "dcpjs" */
  readonly to?: ConvertFormat;
  /**
   * Most bytes of tensors held at once (bytes), beyond the largest single tensor: entries are
   * loaded and written in batches whose tensors sum to at most this (a larger tensor is a batch
   * of its own). @default 268435456 (256 MiB, {@link DEFAULT_CONVERT_WINDOW_BYTES})
   */
  readonly windowBytes?: number;
  /**
   * The writer of a dcpjs or torch output (e.g. an `S3StorageWriter` with `format`).
   * @default the writer of the format `to` that the backend registered for `dst` gives (a {@link FileSystemWriter} for a folder)
   */
  readonly storageWriter?: StorageWriter;
  /** safetensors output: largest output file (bytes). @default 5000000000 */
  readonly maxShardSize?: number;
  /** safetensors output: the `save_distributed` layout (each saved chunk as saved, `DCP_SHARDING_INFO`, no index). @default false */
  readonly sharded?: boolean;
  /** safetensors output: also write `model.safetensors.crc32c.json` (every tensor's CRC-32C, checked by later loads). @default false */
  readonly checksums?: boolean;
  /**
   * Called once each batch is written, while it is still held (progress; memory checks); a
   * promise it returns is awaited before the next batch is loaded.
   */
  readonly onBatch?: (batch: ConvertBatch) => void | Promise<void>;
  /** Called once each batch is written, with the batches written so far and in all. */
  readonly onProgress?: (done: number, total: number) => void;
  /** Aborts the conversion; nothing is committed (data files already written stay, unreferenced). */
  readonly signal?: AbortSignal;
}

/** What {@link convertCheckpoint} wrote. */
export interface ConvertSummary {
  /** Entries converted (tensors and values). */
  readonly entries: number;
  /** Tensor bytes written. */
  readonly bytes: number;
  /** Batches it was loaded and written in. */
  readonly batches: number;
  /** The files written, relative to `dst`, by a format with its own writer (safetensors: the index and sidecar included). */
  readonly files?: readonly string[];
}

/**
 * Splits entries into batches whose bytes sum to at most `window` (a larger entry alone), in the
 * metadata's order.
 */
export function planBatches(
  entries: readonly { readonly fqn: string; readonly bytes: number }[],
  window: number,
): { keys: string[]; bytes: number }[] {
  const out: { keys: string[]; bytes: number }[] = [];
  for (const e of entries) {
    const last = out.at(-1);
    if (!last || (last.bytes + e.bytes > window && last.keys.length > 0))
      out.push({ keys: [e.fqn], bytes: e.bytes });
    else {
      last.keys.push(e.fqn);
      last.bytes += e.bytes;
    }
  }
  return out;
}

/** An entry's bytes in memory once loaded: a tensor's at its global shape; a value's stored length. */
function entryBytes(metadata: Metadata, fqn: string, entry: StorageMetadataEntry): number {
  if (entry.type === "tensor") return numel(entry.size) * DTYPE_BYTES[entry.properties.dtype];
  return metadata.storageData.get(`${fqn}\u0000`)?.length ?? 0;
}

/**
 * Converts a checkpoint (dcpjs, PyTorch DCP or a safetensors folder; a local folder or any URI a
 * registered backend takes, e.g. `s3://`) into dcpjs's format, PyTorch DCP's (`torch`) or a
 * Hugging Face safetensors folder, holding at most `windowBytes` of tensors at once plus the
 * largest tensor — never the whole state dict. Entries are planned into batches; each batch is
 * loaded whole (`loadStateDictFromKeys` with its keys: tensors at their global shape, nesting
 * kept) and written, then let go.
 *
 * dcpjs / torch output: one save whose batches are written by the same writer (one save tag),
 * batch `b`'s data files with the prefix the writer gives plan `b` of as many plans as batches
 * (`__{b}_…`), and one `.metadata` merged from every batch committed last — so a conversion that
 * is killed or fails leaves nothing loadable (the data files already written are unreferenced:
 * removed on failure for a {@link FileSystemWriter}, else `dcp gc`'s). The output of a format with
 * its own writer (safetensors: `writeSafetensorsFolder`, as DCP's `HuggingFaceStorageWriter`) is
 * written by it, with the same window; safetensors' index is written last.
 *
 * @param src - the checkpoint to read.
 * @param dst - the new checkpoint's folder or URI.
 * @param options - see {@link ConvertOptions}.
 * @returns what was converted.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` for a `windowBytes` not an integer ≥ 1, a
 * `to` no registered checkpoint format is called, or a read-only destination backend; `UNSUPPORTED_DTYPE`, before
 * anything is written, when the source holds a tensor of a dtype dcpjs cannot hold (quantized
 * `torch.qint8` …), which the output would otherwise lack; `ABORTED`; the errors of reading the
 * source and writing the destination.
 */
export async function convertCheckpoint(
  src: string,
  dst: string,
  options: ConvertOptions = {},
): Promise<ConvertSummary> {
  const to = options.to ?? "dcpjs";
  const window = options.windowBytes ?? DEFAULT_CONVERT_WINDOW_BYTES;
  assertIntegerInRange("windowBytes", window, 1, Number.MAX_SAFE_INTEGER, " bytes");
  const { signal, onProgress } = options;
  const onBatch =
    options.onBatch || onProgress
      ? async (batch: ConvertBatch) => {
          await options.onBatch?.(batch);
          onProgress?.(batch.index + 1, batch.count);
        }
      : undefined;
  const format = checkpointFormatNamed(to);
  if (format.write) {
    const s = await writeWithFormat(format, src, dst, {
      batchBytes: window,
      ...(options.maxShardSize !== undefined ? { maxShardSize: options.maxShardSize } : {}),
      ...(options.sharded !== undefined ? { sharded: options.sharded } : {}),
      ...(options.checksums !== undefined ? { checksums: options.checksums } : {}),
      ...(signal ? { signal } : {}),
      ...(onBatch ? { onBatch } : {}),
    });
    return { entries: s.tensors + s.values, bytes: s.bytes, batches: s.batches, files: s.files };
  }
  const writer = options.storageWriter ?? (await defaultWriter(dst, to));
  const reader = await createStorageReader(src);
  reader.reset(src);
  const source = await reader.readMetadata(signal);
  // A tensor dcpjs cannot hold would be left out of the output: refused, as exportSafetensors does.
  for (const [fqn, stored] of source.unsupportedDtypes ?? [])
    throw new CheckpointError(
      "UNSUPPORTED_DTYPE",
      `Expected "${fqn}" to be saved in a dtype dcpjs can hold, got ${stored}: converting would drop it`,
    );
  const batches = planBatches(
    [...source.stateDictMetadata].map(([fqn, entry]) => ({ fqn, bytes: entryBytes(source, fqn, entry) })),
    window,
  );

  writer.reset(dst);
  writer.setUpStorageWriter({ isCoordinator: true, rank: 0, worldSize: 1 });
  // Every batch's files get the prefix the writer gives that plan of a global plan of `batches`.
  const prefixes = writer.prepareGlobalPlan(batches.map(() => ({ items: [] }))).map((p) => p.storageData);
  const stateDictMetadata = new Map<string, StorageMetadataEntry>();
  const plannerData = new Map<string, ObjectPath>();
  const results: WriteResult[] = [];
  let version = "1.0.0";
  let bytes = 0;
  let finishing = false;
  try {
    for (const [index, batch] of batches.entries()) {
      throwIfAborted(signal);
      const sd = await loadStateDictFromKeys({
        checkpointId: src,
        storageReader: reader,
        keys: batch.keys,
        ...(signal ? { signal } : {}),
      });
      const planner: SavePlanner = new DefaultSavePlanner();
      planner.setUpPlanner(sd, { isCoordinator: true, storageMeta: writer.storageMeta() });
      const local = await writer.prepareLocalPlan(planner.createLocalPlan());
      const { plans, metadata } = planner.createGlobalPlan([local]);
      const prefix = prefixes[index];
      const plan = planner.finishPlan({ ...plans[0]!, ...(prefix ? { storageData: prefix } : {}) });
      results.push(...(await writer.writeData(plan, planner, signal)));
      for (const [k, v] of metadata.stateDictMetadata) stateDictMetadata.set(k, v);
      for (const [k, v] of metadata.plannerData) plannerData.set(k, v);
      version = metadata.version;
      bytes += batch.bytes;
      // Worker threads that checked this batch's tensors still refer to their shared memory until
      // they collect (by themselves only once idle, which back-to-back batches never are).
      if (workerThreadsRunning() > 0) await collectWorkerHeaps();
      await onBatch?.({ index, count: batches.length, keys: batch.keys, bytes: batch.bytes });
    }
    const merged: Metadata = {
      version,
      stateDictMetadata,
      plannerData,
      storageData: new Map(),
      storageMeta: writer.storageMeta(),
    };
    finishing = true;
    await writer.finish(merged, [results], signal);
  } catch (error) {
    // A failed commit cleans up after itself (and keeps the files where the commit may have happened).
    if (!finishing) await removeWritten(writer, results);
    throw error;
  }
  return { entries: stateDictMetadata.size, bytes, batches: batches.length };
}

/** The writer of an output of `format` (one `FileSystemWriter` writes) at `dst` when none is given: its backend's. */
function defaultWriter(dst: string, format: string): Promise<StorageWriter> {
  return createStorageWriter(dst, { format });
}

/** Removes the data files of the batches written before a failure (a writer over a file system, `FileSystemBacked`; others are left to `dcp gc`). */
async function removeWritten(writer: StorageWriter, results: readonly WriteResult[]): Promise<void> {
  if (!isFileSystemBacked(writer)) return;
  const root = writer.checkpointPath;
  for (const file of new Set(results.map((r) => r.storageData.relativePath)))
    await writer.fs.rmFile(writer.fs.concatPath(root, file)).catch(() => {});
}
