import {
  CheckpointError,
  CheckpointException,
  createStorageReader,
  DTYPE_BYTES,
  emptyTensor,
  load,
  numel,
  type Tensor,
} from "@dcpjs/core";
import {
  checksumName,
  itemChecksum,
  metadataIndexKey,
  type StorageInfo,
  type StorageReader,
} from "@dcpjs/core/extend";

/** Most bytes of tensors `dcp verify` reads into memory at once (a larger tensor alone). */
export const VERIFY_BATCH_BYTES = 256 * 1024 * 1024;

/**
 * What checked an entry's bytes when it was read: the CRC its storage entry records (`CRC-32`, as
 * dcpjs writes, or `CRC-32C`); the zip CRC-32 of every member of a PyTorch item; a safetensors
 * folder's CRC sidecar (`dcp export --checksums`); or nothing but the length.
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

/** Options of {@link verifyCheckpoint}. */
export interface VerifyOptions {
  /** Called after each batch with the tensor bytes read so far and in all. */
  readonly onProgress?: (bytes: number, total: number) => void;
  /**
   * A read cache folder for an `s3://` checkpoint ({@link S3ReadCache}): what this machine fetched
   * before is read from disk (and still verified). @default no cache
   */
  readonly cacheDir?: string;
}

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
 * @param checkpointId - a folder or `s3://` URI, in any format dcpjs reads.
 * @param options - see {@link VerifyOptions}.
 * @returns the report; `damaged` is empty for a sound checkpoint.
 * @throws {@link CheckpointError} when the metadata itself cannot be read (`INCOMPLETE_CHECKPOINT`,
 * `MALFORMED_METADATA`, …).
 */
export async function verifyCheckpoint(
  checkpointId: string,
  options: VerifyOptions = {},
): Promise<VerifyReport> {
  const reader: StorageReader =
    options.cacheDir !== undefined && checkpointId.startsWith("s3://")
      ? new (await import("@dcpjs/s3")).S3StorageReader({ path: checkpointId, cacheDir: options.cacheDir })
      : await createStorageReader(checkpointId);
  const metadata = await reader.readMetadata();
  const entries = [...metadata.stateDictMetadata];
  const format = metadata.storageMeta.format;
  const checkedBy: Partial<Record<EntryChecker, number>> = {};
  const checkers: { fqn: string; checkedBy: EntryChecker }[] = [];
  const bytesOf = ([fqn, e]: (typeof entries)[number]) => {
    const keys =
      e.type === "bytes"
        ? [metadataIndexKey({ fqn, offset: null })]
        : e.chunks.map((c) => metadataIndexKey({ fqn, offset: c.offsets }));
    // An entry of several chunks is as checked as its least checked chunk.
    const kinds = keys.map((k) => checkerOf(metadata.storageData.get(k), format));
    const checker = kinds.includes("length only") ? "length only" : (kinds[0] ?? "length only");
    checkedBy[checker] = (checkedBy[checker] ?? 0) + 1;
    checkers.push({ fqn, checkedBy: checker });
    return e.type === "bytes" ? 0 : numel(e.size) * DTYPE_BYTES[e.properties.dtype];
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
    await load(target, { storageReader: reader, checkpointId });
  };
  const damaged: VerifyReport["damaged"] = [];
  const total = entries.reduce(
    (n, e) => n + (e[1].type === "bytes" ? 0 : numel(e[1].size) * DTYPE_BYTES[e[1].properties.dtype]),
    0,
  );
  let done = 0;
  for (const batch of batches) {
    done += batch.reduce(
      (n, e) => n + (e[1].type === "bytes" ? 0 : numel(e[1].size) * DTYPE_BYTES[e[1].properties.dtype]),
      0,
    );
    try {
      await read(batch);
    } catch {
      for (const entry of batch) {
        try {
          await read([entry]);
        } catch (error) {
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
