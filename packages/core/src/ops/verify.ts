import { CheckpointError, CheckpointException, throwIfAborted } from "../errors.js";
import { checksumName, itemChecksum } from "../formats/checksum.js";
import { load } from "../load.js";
import { DTYPE_BYTES } from "../model/dtype.js";
import { emptyTensor, numel, type Tensor } from "../model/tensor.js";
import { metadataIndexKey, type StorageInfo } from "../plan/metadata.js";
import { createStorageReader } from "../storage/registry.js";
import type { OperationProgress } from "./progress.js";

/** Most bytes of tensors {@link verifyCheckpoint} reads into memory at once (a larger tensor alone). */
export const VERIFY_BATCH_BYTES = 256 * 1024 * 1024;

/**
 * What checked an entry's bytes when it was read: the CRC its storage entry records (`CRC-32`, as
 * dcpjs writes, or `CRC-32C`); the zip CRC-32 of every member of a PyTorch item; a safetensors
 * folder's CRC sidecar (`dcp convert --to safetensors --checksums`); or nothing but the length.
 */
export type EntryChecker =
  | "CRC-32"
  | "CRC-32C"
  | "zip CRC-32"
  | "sidecar CRC-32C"
  | "sidecar CRC-32"
  | "length only";

/** What {@link verifyCheckpoint} found. */
export interface VerifyReport {
  /** Entries (tensors and values) read. */
  readonly checked: number;
  /** Entries read with their length as the only check (safetensors without a CRC sidecar). */
  readonly unchecksummed: number;
  /** Entries by what checked them, e.g. `{ "zip CRC-32": 10 }`. */
  readonly checkedBy: Readonly<Partial<Record<EntryChecker, number>>>;
  /** Every entry and what checked it, in the metadata's order. */
  readonly entries: readonly { readonly fqn: string; readonly checkedBy: EntryChecker }[];
  /** Every damaged entry, with the error code and message of its read. */
  readonly damaged: { fqn: string; code: string; message: string }[];
}

/** Options of {@link verifyCheckpoint}. */
export interface VerifyOptions {
  /** Called after each batch with the tensor bytes read so far and in all. */
  readonly onProgress?: OperationProgress;
  /**
   * A read cache folder, for a backend that has one (S3's `S3ReadCache`): what this machine
   * fetched before is read from disk (and still verified). @default no cache
   */
  readonly cacheDir?: string;
  /** Aborts the verification; throws `ABORTED` (no report). */
  readonly signal?: AbortSignal;
}

/**
 * What checks one stored item on a read: its recorded CRC (a safetensors folder's comes from the
 * sidecar), else a PyTorch item's zip CRCs, else only its length.
 */
function checkerOf(info: StorageInfo | undefined, format: string | undefined): EntryChecker {
  const sum = info && itemChecksum(info);
  if (sum) {
    const crc = checksumName(sum.algorithm) as "CRC-32" | "CRC-32C";
    return format === "safetensors" ? `sidecar ${crc}` : crc;
  }
  return info?.itemFormat === "torch" ? "zip CRC-32" : "length only";
}

/** The code and message of the error that failed a read (a rank's, for a {@link CheckpointException}). */
function rootOf(error: unknown): { code: string; message: string } {
  const e = error instanceof CheckpointException ? (error.failures[0]?.error ?? error) : error;
  if (e instanceof CheckpointError) return { code: e.code, message: e.message };
  return { code: "IO_ERROR", message: String(e) };
}

/**
 * Reads every item of a checkpoint — tensors in batches of at most {@link VERIFY_BATCH_BYTES} —
 * and checks each one's length and checksum (the CRC-32 dcpjs records; a PyTorch item's zip
 * CRC-32s; safetensors items by length unless a CRC sidecar is there), reporting which checked each
 * entry; the metadata's own checks (chunks tile every tensor, paths, limits) run when
 * it is read. A batch that fails is read again entry by entry, so every damaged fqn is named.
 *
 * @param checkpointId - a folder or a URI of any registered backend, in any format dcpjs reads.
 * @param options - see {@link VerifyOptions}.
 * @returns the report; `damaged` is empty for a sound checkpoint.
 * @throws {@link CheckpointError} when the metadata itself cannot be read (`INCOMPLETE_CHECKPOINT`,
 * `MALFORMED_METADATA`, …); `ABORTED`.
 */
export async function verifyCheckpoint(
  checkpointId: string,
  options: VerifyOptions = {},
): Promise<VerifyReport> {
  const { signal } = options;
  const reader = await createStorageReader(
    checkpointId,
    options.cacheDir !== undefined ? { cacheDir: options.cacheDir } : {},
  );
  const metadata = await reader.readMetadata(signal);
  const entries = [...metadata.stateDictMetadata];
  const format = metadata.storageMeta.format;
  const checkedBy: Partial<Record<EntryChecker, number>> = {};
  const checkers: { fqn: string; checkedBy: EntryChecker }[] = [];
  const tensorBytes = ([, e]: (typeof entries)[number]) =>
    e.type === "bytes" ? 0 : numel(e.size) * DTYPE_BYTES[e.properties.dtype];
  const bytesOf = (entry: (typeof entries)[number]) => {
    const [fqn, e] = entry;
    const keys =
      e.type === "bytes"
        ? [metadataIndexKey({ fqn, offset: null })]
        : e.chunks.map((c) => metadataIndexKey({ fqn, offset: c.offsets }));
    // An entry of several chunks is as checked as its least checked chunk.
    const kinds = keys.map((k) => checkerOf(metadata.storageData.get(k), format));
    const checker = kinds.includes("length only") ? "length only" : (kinds[0] ?? "length only");
    checkedBy[checker] = (checkedBy[checker] ?? 0) + 1;
    checkers.push({ fqn, checkedBy: checker });
    return tensorBytes(entry);
  };
  const batches: (typeof entries)[] = [];
  let bytes = 0;
  for (const entry of entries) {
    const b = bytesOf(entry);
    if (batches.length === 0 || bytes + b > VERIFY_BATCH_BYTES) {
      batches.push([]);
      bytes = 0;
    }
    batches.at(-1)!.push(entry);
    bytes += b;
  }
  const read = async (batch: typeof entries) => {
    const target: Record<string, Tensor | null> = {};
    for (const [fqn, e] of batch)
      target[fqn] = e.type === "bytes" ? null : emptyTensor(e.properties.dtype, e.size);
    await load(target, { storageReader: reader, checkpointId, ...(signal ? { signal } : {}) });
  };
  const damaged: VerifyReport["damaged"] = [];
  const total = entries.reduce((n, e) => n + tensorBytes(e), 0);
  let done = 0;
  for (const batch of batches) {
    throwIfAborted(signal);
    done += batch.reduce((n, e) => n + tensorBytes(e), 0);
    try {
      await read(batch);
    } catch {
      for (const entry of batch) {
        throwIfAborted(signal);
        try {
          await read([entry]);
        } catch (error) {
          throwIfAborted(signal);
          damaged.push({ fqn: entry[0], ...rootOf(error) });
        }
      }
    }
    options.onProgress?.(done, total);
  }
  return {
    checked: entries.length,
    unchecksummed: checkedBy["length only"] ?? 0,
    checkedBy,
    entries: checkers,
    damaged,
  };
}
