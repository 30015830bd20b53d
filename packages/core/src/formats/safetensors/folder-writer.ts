import { allocBytes } from "#platform";
import { crc32c } from "#platform/crc";
import { CheckpointError, throwIfAborted } from "../../errors.js";
import { DTYPE_BYTES } from "../../model/dtype.js";
import type { StateDict } from "../../model/state-dict.js";
import { numel, type ShardedTensor, type Tensor, tensor, tensorBytes } from "../../model/tensor.js";
import { metadataIndexKey, type TensorStorageMetadata } from "../../plan/metadata.js";
import { assertIntegerInRange } from "../../validate.js";
import type {
  CheckpointOutput,
  CheckpointSource,
  CheckpointWriteBatch,
  CheckpointWriteOptions,
  CheckpointWriteSummary,
} from "../checkpoint-format.js";
import {
  DCP_SHARDING_INFO_KEY,
  SAFETENSORS_CHECKSUMS_FILE,
  SAFETENSORS_INDEX_FILE,
} from "./folder-reader.js";
import { SAFETENSORS_PREFIX_BYTES, toSafetensors } from "./header.js";

/** The default largest output file, as Hugging Face's `max_shard_size="5GB"` (bytes). */
export const DEFAULT_MAX_SHARD_SIZE = 5_000_000_000;
/** Most bytes of tensors held at once while exporting, beyond the largest single tensor. */
export const EXPORT_BATCH_BYTES = 256 * 1024 * 1024;
/** The `__metadata__` key under which non-tensor values are exported, as one JSON string. */
export const VALUES_METADATA_KEY = "dcpjs_values";

/** Options of {@link writeSafetensorsFolder} (and `exportSafetensors`, `convertCheckpoint` to safetensors). */
export interface SafetensorsWriteOptions extends CheckpointWriteOptions {
  /**
   * Largest output file in bytes (a larger tensor gets a file of its own), for the consolidated
   * layout. @default 5000000000 (HF's "5GB")
   */
  readonly maxShardSize?: number;
  /**
   * Write the `save_distributed` layout instead — `shard-{r:05}-model-00001-of-00001.safetensors`,
   * each saved chunk as saved, with `DCP_SHARDING_INFO` (as torch's `HuggingFaceStorageWriter(
   * save_distributed=True)`; torch's `consolidate_safetensors_files` accepts it) and no index.
   * @default false
   */
  readonly sharded?: boolean;
  /** Also write `model.safetensors.crc32c.json`: the CRC-32C of every tensor, checked by every later load. @default false */
  readonly checksums?: boolean;
  /**
   * Most bytes of tensors loaded at once (bytes), beyond the largest single tensor: a batch of
   * tensors summing to at most this is loaded, then written. @default 268435456 (256 MiB, {@link EXPORT_BATCH_BYTES})
   */
  readonly batchBytes?: number;
  /**
   * Called once each batch is handed to the file, while it is still held (progress; memory
   * checks); a promise it returns is awaited before the next batch is loaded.
   */
  readonly onBatch?: (batch: CheckpointWriteBatch) => void | Promise<void>;
  /** Aborts the export; files already written stay (the index, written last, does not). */
  readonly signal?: AbortSignal;
}

/** What {@link writeSafetensorsFolder} wrote. */
export interface ExportSummary extends CheckpointWriteSummary {
  /** The files written, relative to the destination, the index and sidecar included. */
  readonly files: string[];
  /** Tensors (or, sharded, chunks) written, and their bytes. */
  readonly tensors: number;
  readonly bytes: number;
  /** Non-tensor values put in `__metadata__` under {@link VALUES_METADATA_KEY}. */
  readonly values: number;
  /** Batches the tensors were loaded in. */
  readonly batches: number;
}

/** One tensor (or chunk) to write: its name, dtype, shape and where it comes from. */
interface Piece {
  readonly fqn: string;
  readonly entry: TensorStorageMetadata;
  /** The chunk, for a sharded export; the whole tensor otherwise. */
  readonly chunk?: TensorStorageMetadata["chunks"][number];
  readonly bytes: number;
}

/** A safetensors header: JSON padded with spaces so that the data starts 8-byte aligned (as safetensors 0.8). */
function encodeHeader(pieces: readonly Piece[], metadata: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let at = 0;
  for (const p of pieces) {
    const shape = p.chunk ? p.chunk.sizes : p.entry.size;
    header[p.fqn] = {
      ...toSafetensors(p.entry.properties.dtype, shape, p.fqn),
      data_offsets: [at, at + p.bytes],
    };
    at += p.bytes;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  const out = new Uint8Array(SAFETENSORS_PREFIX_BYTES + padded).fill(0x20);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, SAFETENSORS_PREFIX_BYTES);
  return out;
}

/**
 * Loads `pieces` from the source in one `load` (flat keys: a fqn is its own key) into views of
 * `arena`, 8-byte aligned, so that every batch reuses the same memory.
 */
async function loadPieces(
  source: CheckpointSource,
  pieces: readonly Piece[],
  arena: Uint8Array,
  signal?: AbortSignal,
): Promise<Tensor[]> {
  const target: Record<string, Tensor | ShardedTensor> = {};
  let at = 0;
  const tensors = pieces.map((p) => {
    const sizes = p.chunk ? p.chunk.sizes : p.entry.size;
    const t = tensor(p.entry.properties.dtype, sizes, arena.subarray(at, at + p.bytes));
    at += Math.ceil(p.bytes / 8) * 8;
    target[p.fqn] = p.chunk
      ? {
          dtype: p.entry.properties.dtype,
          shape: [...p.entry.size],
          shards: [{ offsets: [...p.chunk.offsets], tensor: t }],
        }
      : t;
    return t;
  });
  await source.load(target, signal);
  return tensors;
}

/** Splits pieces into runs whose bytes stay within `limit` (a larger piece is a run of its own). */
function runs(pieces: readonly Piece[], limit: number): Piece[][] {
  const out: Piece[][] = [];
  let bytes = 0;
  for (const p of pieces) {
    if (out.length === 0 || bytes + p.bytes > limit) {
      out.push([]);
      bytes = 0;
    }
    out.at(-1)!.push(p);
    bytes += p.bytes;
  }
  return out;
}

/**
 * Writes a checkpoint as a Hugging Face safetensors folder (the safetensors checkpoint format's
 * writer, as DCP's `HuggingFaceStorageWriter`): consolidated files `model-0000k-of-0000N.safetensors`
 * holding every tensor at its global shape, plus `model.safetensors.index.json` (`total_size`,
 * `weight_map`), written last; or, with `sharded`, the `save_distributed` layout. Headers are
 * padded to 8 bytes; dtypes map `float32 → F32` … `bool → BOOL`. Non-tensor values go into the
 * first file's `__metadata__` as one JSON string under `dcpjs_values` (bigints as decimal
 * strings, bytes as arrays of numbers).
 *
 * Memory: tensors are loaded in batches of at most `batchBytes` (default
 * {@link EXPORT_BATCH_BYTES}, 256 MiB; a larger tensor alone) into one reused buffer the size of
 * the largest batch — at most max(largest tensor, `batchBytes`) plus 8-byte padding — so the
 * write holds that much tensor data plus the metadata (and on S3 the upload's parts); files are
 * written front to back.
 *
 * @param source - the checkpoint to write.
 * @param output - the destination folder.
 * @param options - see {@link SafetensorsWriteOptions}.
 * @returns what was written.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` for a `maxShardSize` or `batchBytes` below 1;
 * `UNSUPPORTED_DTYPE` naming the tensor, before anything is written, for a dtype safetensors lacks
 * (`complex32`, `complex128`) or one dcpjs cannot hold (`torch.qint8` …); the errors of loading
 * the source and of writing the output.
 */
export async function writeSafetensorsFolder(
  source: CheckpointSource,
  output: CheckpointOutput,
  options: SafetensorsWriteOptions = {},
): Promise<ExportSummary> {
  const { maxShardSize, batchBytes } = checkSafetensorsWriteOptions(options);
  const { signal, onBatch } = options;
  const { metadata } = source;
  for (const [fqn, stored] of metadata.unsupportedDtypes ?? [])
    throw new CheckpointError(
      "UNSUPPORTED_DTYPE",
      `Expected "${fqn}" to be saved in a dtype dcpjs can hold, got ${stored}`,
    );

  const bytesOf = (e: TensorStorageMetadata, sizes: readonly number[]) =>
    numel(sizes) * DTYPE_BYTES[e.properties.dtype];
  const tensorEntries = [...metadata.stateDictMetadata].filter(
    (x): x is [string, TensorStorageMetadata] => x[1].type === "tensor",
  );
  // Every dtype safetensors has, checked before a file is written.
  for (const [fqn, e] of tensorEntries) toSafetensors(e.properties.dtype, e.size, fqn);
  const valueKeys = [...metadata.stateDictMetadata].filter(([, e]) => e.type === "bytes").map(([k]) => k);
  const valuesJson = valueKeys.length > 0 ? await exportValues(source, valueKeys, signal) : undefined;

  // Output files: lists of pieces, each with its name and __metadata__.
  const files: { name: string; pieces: Piece[]; metadata: Record<string, string> }[] = [];
  if (options.sharded) {
    // One file per saving rank (from the data file's `__{rank}_` prefix), chunks as saved.
    const byRank = new Map<number, Piece[][]>();
    for (const [fqn, entry] of tensorEntries) {
      for (const chunk of entry.chunks) {
        const key = metadataIndexKey({ fqn, offset: chunk.offsets });
        const path = metadata.storageData.get(key)?.relativePath ?? "";
        const rank = Number(/(?:^|\/)__(\d+)_/.exec(path)?.[1] ?? 0);
        const shards = byRank.get(rank) ?? [[]];
        // A file holds one chunk per name: a rank's second chunk of a tensor opens another file.
        let shard = shards.find((s) => !s.some((p) => p.fqn === fqn));
        if (!shard) {
          shard = [];
          shards.push(shard);
        }
        shard.push({ fqn, entry, chunk, bytes: bytesOf(entry, chunk.sizes) });
        byRank.set(rank, shards);
      }
    }
    let index = 0;
    for (const rank of [...byRank.keys()].sort((a, b) => a - b)) {
      for (const pieces of byRank.get(rank)!) {
        index++;
        const sharding = Object.fromEntries(
          pieces.map((p) => [p.fqn, { saved_offsets: [...p.chunk!.offsets] }]),
        );
        files.push({
          name: `shard-${String(index).padStart(5, "0")}-model-00001-of-00001.safetensors`,
          pieces,
          metadata: { [DCP_SHARDING_INFO_KEY]: JSON.stringify(sharding), DCP_VERSION: "1.0", format: "pt" },
        });
      }
    }
  } else {
    const pieces = tensorEntries.map(([fqn, entry]) => ({ fqn, entry, bytes: bytesOf(entry, entry.size) }));
    const groups = runs(pieces, maxShardSize);
    if (groups.length === 0) groups.push([]);
    groups.forEach((g, i) => {
      const name = `model-${String(i + 1).padStart(5, "0")}-of-${String(groups.length).padStart(5, "0")}.safetensors`;
      files.push({ name, pieces: g, metadata: { format: "pt" } });
    });
  }
  if (valuesJson !== undefined && files.length > 0) files[0]!.metadata[VALUES_METADATA_KEY] = valuesJson;

  const checksums: Record<string, Record<string, number>> = {};
  let bytes = 0;
  // One buffer for every batch: a batch is at most `batchBytes`, or one larger piece (each piece
  // 8-byte aligned in it: at most 7 bytes of padding per piece).
  const batches = files.map((f) => runs(f.pieces, batchBytes));
  const arenaBytes = Math.max(
    0,
    ...batches.flat().map((b) => b.reduce((n, p) => n + Math.ceil(p.bytes / 8) * 8, 0)),
  );
  const arena = allocBytes(arenaBytes);
  const count = batches.reduce((n, b) => n + b.length, 0);
  let index = 0;
  for (const [f, file] of files.entries()) {
    throwIfAborted(signal);
    const sums: Record<string, number> = {};
    await output.writeFile(
      file.name,
      (async function* () {
        yield encodeHeader(file.pieces, file.metadata);
        for (const batch of batches[f]!) {
          const tensors = await loadPieces(source, batch, arena, signal);
          let held = 0;
          for (const [i, t] of tensors.entries()) {
            const data = tensorBytes(t);
            if (options.checksums) sums[batch[i]!.fqn] = crc32c(data);
            bytes += data.byteLength;
            held += data.byteLength;
            yield data;
          }
          await onBatch?.({ index: index++, count, keys: batch.map((p) => p.fqn), bytes: held });
        }
      })(),
    );
    checksums[file.name] = sums;
  }
  const written = files.map((f) => f.name);
  const writeJson = async (name: string, value: unknown) => {
    await output.writeFile(name, [new TextEncoder().encode(`${JSON.stringify(value, null, 2)}\n`)]);
    written.push(name);
  };
  if (options.checksums)
    await writeJson(SAFETENSORS_CHECKSUMS_FILE, { algorithm: "crc32c", files: checksums });
  if (!options.sharded) {
    const weightMap = Object.fromEntries(files.flatMap((f) => f.pieces.map((p) => [p.fqn, f.name])));
    await writeJson(SAFETENSORS_INDEX_FILE, { metadata: { total_size: bytes }, weight_map: weightMap });
  }
  return {
    files: written,
    tensors: files.reduce((n, f) => n + f.pieces.length, 0),
    bytes,
    values: valueKeys.length,
    batches: count,
  };
}

/** The checkpoint's non-tensor values as one JSON object `{fqn: value}`. */
async function exportValues(
  source: CheckpointSource,
  keys: readonly string[],
  signal?: AbortSignal,
): Promise<string> {
  const target: StateDict = Object.fromEntries(keys.map((k) => [k, null]));
  await source.load(target, signal);
  return JSON.stringify(target, (_k, v: unknown) =>
    typeof v === "bigint" ? v.toString() : v instanceof Uint8Array ? Array.from(v) : v,
  );
}

/**
 * Checks a safetensors write's options before anything is read or written.
 * @param options - see {@link SafetensorsWriteOptions}.
 * @returns `maxShardSize` and `batchBytes` with their defaults.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` for a `maxShardSize` or `batchBytes` not an integer ≥ 1.
 */
export function checkSafetensorsWriteOptions(options: SafetensorsWriteOptions): {
  maxShardSize: number;
  batchBytes: number;
} {
  const maxShardSize = options.maxShardSize ?? DEFAULT_MAX_SHARD_SIZE;
  assertIntegerInRange("maxShardSize", maxShardSize, 1, Number.MAX_SAFE_INTEGER, " bytes");
  const batchBytes = options.batchBytes ?? EXPORT_BATCH_BYTES;
  assertIntegerInRange("batchBytes", batchBytes, 1, Number.MAX_SAFE_INTEGER, " bytes");
  return { maxShardSize, batchBytes };
}
