import { MetadataError } from "../../errors.js";
import type {
  ChunkStorageMetadata,
  Metadata,
  StorageInfo,
  StorageMetadataEntry,
  TensorStorageMetadata,
} from "../../plan/metadata.js";
import { metadataIndexKey } from "../../plan/metadata.js";
import type { CheckpointFolder } from "../checkpoint-format.js";
import { assertSafeRelativePath } from "../metadata-checks.js";
import { MAX_SAFETENSORS_HEADER_BYTES, parseSafetensorsHeader, SAFETENSORS_PREFIX_BYTES } from "./header.js";

/** The index file of a Hugging Face checkpoint split over several files. */
export const SAFETENSORS_INDEX_FILE = "model.safetensors.index.json";
/** The optional sidecar `dcp export --checksums` writes: CRC-32C of every tensor, per file. */
export const SAFETENSORS_CHECKSUMS_FILE = "model.safetensors.crc32c.json";
/** The `__metadata__` key with DCP's sharding info (`{fqn: {saved_offsets}}`), as torch's HF writer. */
export const DCP_SHARDING_INFO_KEY = "DCP_SHARDING_INFO";

async function readJson(folder: CheckpointFolder, name: string): Promise<unknown | undefined> {
  const bytes = await folder.readFile(name, { random: true });
  if (bytes === undefined) return undefined;
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes)) as unknown;
  } catch (cause) {
    throw new MetadataError(`Malformed ${folder.path}/${name}: expected UTF-8 JSON`, { cause });
  }
}

/** The safetensors files of a folder: the index's weight map (each path checked before it is read), else a listing. */
async function safetensorsFiles(folder: CheckpointFolder): Promise<string[]> {
  const index = await readJson(folder, SAFETENSORS_INDEX_FILE);
  if (index !== undefined) {
    const map = (index as { weight_map?: unknown }).weight_map;
    if (typeof map !== "object" || map === null || Array.isArray(map))
      throw new MetadataError(`Malformed ${SAFETENSORS_INDEX_FILE}: expected a weight_map object`);
    const files = [...new Set(Object.values(map as Record<string, unknown>))];
    for (const f of files) {
      if (typeof f !== "string" || !f.endsWith(".safetensors"))
        throw new MetadataError(
          `Malformed ${SAFETENSORS_INDEX_FILE}: expected .safetensors file names, got ${JSON.stringify(f)}`,
        );
      assertSafeRelativePath(f);
    }
    return (files as string[]).sort();
  }
  return ((await folder.list()) ?? []).filter((f) => f.endsWith(".safetensors")).sort();
}

/**
 * Builds checkpoint metadata from a folder of `*.safetensors` files, with the semantics of DCP's
 * `HuggingFaceStorageReader`: the files are those of `model.safetensors.index.json`, else every
 * `*.safetensors` in the folder; each tensor is a chunk at the offsets `DCP_SHARDING_INFO` gives
 * (sharded files), else at offset 0; a tensor's global size is the largest offset + shape. Every
 * header is validated (see `parseSafetensorsHeader`); the result is raw (`validateMetadata`
 * checks that the chunks tile each tensor). When `model.safetensors.crc32c.json` is there, every
 * tensor read is checked against it; otherwise integrity is by length and structure only
 * (safetensors has no checksum).
 *
 * @param folder - the folder.
 * @returns the metadata, or `undefined` when the folder holds no safetensors files.
 * @throws {@link MetadataError} for a malformed header, index or sidecar, or a dtype that differs
 * between shards; `UNSUPPORTED_DTYPE` for an F4/F6 tensor whose last dimension does not split into
 * whole packed elements.
 */
export async function readSafetensorsFolder(folder: CheckpointFolder): Promise<Metadata | undefined> {
  const files = await safetensorsFiles(folder);
  if (files.length === 0) return undefined;
  const sidecar = (await readJson(folder, SAFETENSORS_CHECKSUMS_FILE)) as
    | { files?: Record<string, Record<string, number>> }
    | undefined;
  const tensors = new Map<
    string,
    { dtype: TensorStorageMetadata["properties"]["dtype"]; chunks: ChunkStorageMetadata[] }
  >();
  const storageData = new Map<string, StorageInfo>();
  for (const file of files) {
    const stream = await folder.open(file);
    let header: ReturnType<typeof parseSafetensorsHeader>;
    try {
      const size = await stream.size();
      if (size < SAFETENSORS_PREFIX_BYTES)
        throw new MetadataError(`Malformed safetensors file ${file}: ${size} bytes`);
      const prefix = await stream.read(0, SAFETENSORS_PREFIX_BYTES);
      const length = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
      if (length > BigInt(Math.min(MAX_SAFETENSORS_HEADER_BYTES, size - SAFETENSORS_PREFIX_BYTES))) {
        throw new MetadataError(
          `Malformed safetensors file ${file}: the header claims ${length} bytes; at most ${Math.min(MAX_SAFETENSORS_HEADER_BYTES, size - SAFETENSORS_PREFIX_BYTES)} are possible`,
        );
      }
      header = parseSafetensorsHeader(
        await stream.read(SAFETENSORS_PREFIX_BYTES, Number(length)),
        size,
        file,
      );
    } finally {
      await stream.close();
    }
    const shardingText = header.metadata.get(DCP_SHARDING_INFO_KEY);
    let sharding: Record<string, { saved_offsets?: unknown }> = {};
    if (shardingText !== undefined) {
      try {
        sharding = JSON.parse(shardingText) as typeof sharding;
      } catch (cause) {
        throw new MetadataError(`Malformed ${DCP_SHARDING_INFO_KEY} in ${file}: not JSON`, { cause });
      }
    }
    for (const e of header.entries) {
      const saved = Object.hasOwn(sharding, e.name) ? sharding[e.name]?.saved_offsets : undefined;
      const offsets = saved === undefined ? e.shape.map(() => 0) : saved;
      if (
        !Array.isArray(offsets) ||
        offsets.length !== e.shape.length ||
        !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)
      ) {
        throw new MetadataError(
          `Malformed ${DCP_SHARDING_INFO_KEY} in ${file}: expected saved_offsets of ${JSON.stringify(e.name)} to be ${e.shape.length} non-negative integers`,
        );
      }
      const entry = tensors.get(e.name) ?? { dtype: e.dtype, chunks: [] };
      if (entry.dtype !== e.dtype)
        throw new MetadataError(
          `Malformed safetensors folder: ${JSON.stringify(e.name)} is ${entry.dtype} in one file and ${e.dtype} in ${file}`,
        );
      entry.chunks.push({ offsets: offsets as number[], sizes: [...e.shape] });
      tensors.set(e.name, entry);
      const key = metadataIndexKey({ fqn: e.name, offset: offsets as number[] });
      if (storageData.has(key))
        throw new MetadataError(
          `Malformed safetensors folder: ${JSON.stringify(e.name)} at [${offsets.join(", ")}] is in two files`,
        );
      const crc = sidecar?.files?.[file]?.[e.name];
      storageData.set(key, {
        relativePath: file,
        offset: e.offset,
        length: e.length,
        ...(typeof crc === "number" ? { crc32c: crc } : {}),
      });
    }
  }
  const stateDictMetadata = new Map<string, StorageMetadataEntry>();
  for (const [fqn, { dtype, chunks }] of tensors) {
    const size = chunks[0]!.sizes.map((_, d) => Math.max(...chunks.map((c) => c.offsets[d]! + c.sizes[d]!)));
    stateDictMetadata.set(fqn, { type: "tensor", properties: { dtype }, size, chunks });
  }
  return {
    version: "1.0.0",
    stateDictMetadata,
    plannerData: new Map(),
    storageData,
    storageMeta: { checkpointId: folder.path, format: "safetensors" },
  };
}
