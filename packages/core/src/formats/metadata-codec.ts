import { decode, encode } from "@msgpack/msgpack";
import { crc32c } from "#platform/crc";
import { CheckpointError, MetadataError } from "../errors.js";
import { type DecodeBudget, decodeGuarded } from "../model/decode-budget.js";
import { type DType, isDType } from "../model/dtype.js";
import { assertMsgpackWithinLimits, MAX_MSGPACK_DEPTH } from "../model/msgpack-bounds.js";
import type { ObjectPath } from "../model/state-dict.js";
import {
  type ChunkStorageMetadata,
  type Metadata,
  metadataIndexKey,
  type StorageInfo,
  type StorageMetadataEntry,
} from "../plan/metadata.js";
import {
  CHECKSUM_ALGORITHMS,
  type ChecksumAlgorithm,
  ITEM_CHECKSUM_ALGORITHM,
  itemChecksum,
} from "./checksum.js";
import { decodeStorageMeta, fail, isCount, map, show, str } from "./metadata-checks.js";
import { decodeMetadataV1 } from "./metadata-v1.js";
import { validateMetadata } from "./validate-metadata.js";

export { assertSafeRelativePath, MAX_ITEM_BYTES, MAX_TILING_COMPARISONS } from "./metadata-checks.js";

/** The `format` field of every dcpjs `.metadata` file. */
export const METADATA_FORMAT = "dcpjs.metadata";
/**
 * The metadata layout version this build writes (see docs/format.md): 2, columns of typed
 * numbers, its `checksum` field naming the items' CRC (`crc32`). Version 1 (records as arrays,
 * CRC-32C implied) is still read.
 */
export const METADATA_FORMAT_VERSION = 2;
/** Largest `.metadata` file a reader accepts (bytes): 1 GiB, far above the tens to hundreds of bytes per item written. */
export const MAX_METADATA_BYTES = 1024 * 1024 * 1024;
/** Bytes of the CRC-32C trailer after the msgpack body. */
const TRAILER_BYTES = 4;
/** `entries.dtype` of a non-tensor value. */
const VALUE_DTYPE = 0xff;
/** Most dimensions a tensor may have in `.metadata` (one byte; torch allows 64). */
const MAX_NDIM = 0xfe;

/** Little-endian columns of unsigned 8-bit, unsigned 32-bit and float64 numbers, grown as written. */
class ColumnWriter {
  #bytes = new Uint8Array(1024);
  #view = new DataView(this.#bytes.buffer);
  #length = 0;

  constructor(private readonly width: 1 | 4 | 8) {}

  push(v: number): void {
    if (this.#length + this.width > this.#bytes.byteLength) {
      const grown = new Uint8Array(this.#bytes.byteLength * 2);
      grown.set(this.#bytes);
      this.#bytes = grown;
      this.#view = new DataView(grown.buffer);
    }
    if (this.width === 1) this.#view.setUint8(this.#length, v);
    else if (this.width === 4) this.#view.setUint32(this.#length, v, true);
    else this.#view.setFloat64(this.#length, v, true);
    this.#length += this.width;
  }

  bytes(): Uint8Array {
    return this.#bytes.subarray(0, this.#length);
  }
}

/**
 * Encodes a checkpoint's metadata as the bytes of `.metadata`: a msgpack map in columns (layout
 * version 2, docs/format.md) followed by the CRC-32C of that map, 4 bytes little-endian.
 *
 * @param metadata - the metadata, with storage data filled in for every chunk and value.
 * @returns the file's bytes.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when an item has no storage entry or no
 * checksum, items record different checksum algorithms or running-checksum block sizes (the file
 * names one of each for all), or a tensor has more than 254 dimensions.
 */
export function encodeMetadata(metadata: Metadata): Uint8Array {
  const fqns: string[] = [];
  const dtypes: string[] = [];
  const dtypeIndex = new Map<string, number>();
  const entryDtype = new ColumnWriter(1);
  const entryNdim = new ColumnWriter(1);
  const entrySize = new ColumnWriter(8);
  const entryChunks = new ColumnWriter(4);
  const paths: (ObjectPath | number | true | null)[] = [];
  const chunkOffsets = new ColumnWriter(8);
  const chunkSizes = new ColumnWriter(8);
  const files: string[] = [];
  const fileIndex = new Map<string, number>();
  const storageFile = new ColumnWriter(4);
  const storageOffset = new ColumnWriter(8);
  const storageLength = new ColumnWriter(8);
  const storageChecksum = new ColumnWriter(4);
  const itemFormats: [number, string][] = [];
  const blockRecords = new ColumnWriter(4);
  const blockRunning = new ColumnWriter(4);
  let blockBytes: number | undefined;
  let records = 0;
  let algorithm: ChecksumAlgorithm | undefined;

  const record = (fqn: string, info: StorageInfo | undefined) => {
    if (!info)
      throw new CheckpointError(
        "INVALID_ARGUMENT",
        `Expected a storage entry for every item, "${fqn}" has none`,
      );
    const sum = itemChecksum(info);
    if (sum === undefined)
      throw new CheckpointError(
        "INVALID_ARGUMENT",
        `Expected a CRC-32 or CRC-32C for every item of a dcpjs checkpoint, "${fqn}" has none`,
      );
    algorithm ??= sum.algorithm;
    if (sum.algorithm !== algorithm)
      throw new CheckpointError(
        "INVALID_ARGUMENT",
        `Expected every item of a dcpjs checkpoint to record one checksum algorithm (${algorithm}), "${fqn}" has ${sum.algorithm}`,
      );
    let file = fileIndex.get(info.relativePath);
    if (file === undefined) {
      file = files.push(info.relativePath) - 1;
      fileIndex.set(info.relativePath, file);
    }
    storageFile.push(file);
    storageOffset.push(info.offset);
    storageLength.push(info.length);
    storageChecksum.push(sum.value);
    // Items framed by another format (see ItemFormat) name it.
    if (info.itemFormat !== undefined && info.itemFormat !== "dcpjs")
      itemFormats.push([records, info.itemFormat]);
    if (info.checksumBlocks) {
      blockBytes ??= info.checksumBlocks.blockBytes;
      if (info.checksumBlocks.blockBytes !== blockBytes)
        throw new CheckpointError(
          "INVALID_ARGUMENT",
          `Expected every item's running checksums to use one block size (${blockBytes} bytes), "${fqn}" uses ${info.checksumBlocks.blockBytes}`,
        );
      blockRecords.push(records);
      for (const r of info.checksumBlocks.running) blockRunning.push(r);
    }
    records++;
  };

  for (const [fqn, e] of metadata.stateDictMetadata) {
    fqns.push(fqn);
    const path = metadata.plannerData.get(fqn);
    paths.push(path === undefined ? null : encodePath(fqn, path));
    if (e.type === "bytes") {
      entryDtype.push(VALUE_DTYPE);
      entryNdim.push(0);
      entryChunks.push(0);
      record(fqn, metadata.storageData.get(metadataIndexKey({ fqn, offset: null })));
      continue;
    }
    let d = dtypeIndex.get(e.properties.dtype);
    if (d === undefined) {
      d = dtypes.push(e.properties.dtype) - 1;
      dtypeIndex.set(e.properties.dtype, d);
    }
    if (e.size.length > MAX_NDIM)
      throw new CheckpointError(
        "INVALID_ARGUMENT",
        `Expected at most ${MAX_NDIM} dimensions, "${fqn}" has ${e.size.length}`,
      );
    entryDtype.push(d);
    entryNdim.push(e.size.length);
    for (const s of e.size) entrySize.push(s);
    entryChunks.push(e.chunks.length);
    for (const c of e.chunks) {
      for (const o of c.offsets) chunkOffsets.push(o);
      for (const s of c.sizes) chunkSizes.push(s);
      record(fqn, metadata.storageData.get(metadataIndexKey({ fqn, offset: c.offsets })));
    }
  }
  const plannerExtra: [string, ObjectPath][] = [];
  for (const [fqn, path] of metadata.plannerData)
    if (!metadata.stateDictMetadata.has(fqn)) plannerExtra.push([fqn, path]);

  const body = encode({
    format: METADATA_FORMAT,
    formatVersion: METADATA_FORMAT_VERSION,
    checksum: algorithm ?? ITEM_CHECKSUM_ALGORITHM,
    version: metadata.version,
    dtypes,
    entries: {
      fqn: fqns,
      dtype: entryDtype.bytes(),
      ndim: entryNdim.bytes(),
      size: entrySize.bytes(),
      chunks: entryChunks.bytes(),
      path: paths,
    },
    chunks: { offsets: chunkOffsets.bytes(), sizes: chunkSizes.bytes() },
    files,
    storage: {
      file: storageFile.bytes(),
      offset: storageOffset.bytes(),
      length: storageLength.bytes(),
      checksum: storageChecksum.bytes(),
      itemFormats,
      ...(blockBytes !== undefined
        ? { blocks: { bytes: blockBytes, records: blockRecords.bytes(), running: blockRunning.bytes() } }
        : {}),
    },
    plannerExtra,
    storageMeta: { ...metadata.storageMeta },
  });
  const out = new Uint8Array(body.byteLength + TRAILER_BYTES);
  out.set(body);
  new DataView(out.buffer).setUint32(body.byteLength, crc32c(body), true);
  return out;
}

/**
 * Decodes and validates `.metadata` bytes written by {@link encodeMetadata} (layout version 2) or
 * by dcpjs before it (version 1): {@link decodeRawMetadata}, then `validateMetadata` (chunk
 * bounds and tiling, storage entries for every chunk and value, item lengths, safe relative
 * paths, no `__proto__` keys).
 *
 * @param bytes - the file's bytes.
 * @returns the metadata.
 * @throws {@link MetadataError} `MALFORMED_METADATA` saying what was expected and found (also for
 * anything else a decoder would throw), or `UNSAFE_PATH` for a path escaping the checkpoint folder.
 */
export function decodeMetadata(bytes: Uint8Array): Metadata {
  return decodeGuarded(".metadata", () => validateMetadata(decodeUnchecked(bytes)));
}

/**
 * Decodes `.metadata` bytes of layout version 2 or 1 into raw metadata, checking only the file's
 * own structure — the CRC-32C trailer, the format and version, every field's type, column lengths
 * and indices — and walking the msgpack within a {@link DecodeBudget} first; the metadata itself is
 * `validateMetadata`'s to check (the dcpjs checkpoint format's decoder).
 *
 * @param bytes - the file's bytes.
 * @throws {@link MetadataError} `MALFORMED_METADATA` saying what was expected and found.
 */
export function decodeRawMetadata(bytes: Uint8Array): Metadata {
  return decodeGuarded(".metadata", () => decodeUnchecked(bytes));
}

function decodeUnchecked(bytes: Uint8Array): Metadata {
  if (bytes.byteLength > MAX_METADATA_BYTES)
    fail(`expected at most ${MAX_METADATA_BYTES} bytes, got ${bytes.byteLength}`);
  if (bytes.byteLength <= TRAILER_BYTES)
    fail(`expected more than ${TRAILER_BYTES} bytes, got ${bytes.byteLength}`);
  const bodyLength = bytes.byteLength - TRAILER_BYTES;
  const body = bytes.subarray(0, bodyLength);
  const stored = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(bodyLength, true);
  const actual = crc32c(body);
  if (stored !== actual) {
    fail(
      `CRC-32C of the body is 0x${actual.toString(16).padStart(8, "0")}, expected 0x${stored.toString(16).padStart(8, "0")} (damaged or not a dcpjs checkpoint)`,
    );
  }
  assertMsgpackWithinLimits(body, ".metadata");
  let raw: unknown;
  try {
    raw = decode(body);
  } catch (cause) {
    throw new MetadataError("Malformed .metadata: the body is not valid msgpack", { cause });
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) fail("expected a map at the top level");
  const top = raw as Record<string, unknown>;
  if (top.format !== METADATA_FORMAT) fail(`expected format "${METADATA_FORMAT}", got ${show(top.format)}`);
  if (top.formatVersion === 1) return decodeMetadataV1(top); // CRC-32C implied
  if (top.formatVersion !== METADATA_FORMAT_VERSION) {
    fail(
      `expected formatVersion 1 or ${METADATA_FORMAT_VERSION}, got ${show(top.formatVersion)} (written by a newer dcpjs?)`,
    );
  }
  if (!CHECKSUM_ALGORITHMS.includes(top.checksum as ChecksumAlgorithm))
    fail(`expected checksum to be one of ${CHECKSUM_ALGORITHMS.join(", ")}, got ${show(top.checksum)}`);
  return decodeColumns(top, top.checksum as ChecksumAlgorithm);
}

/** A list field of the body. */
function list(v: unknown, what: string, length?: number): unknown[] {
  if (!Array.isArray(v)) fail(`expected ${what} to be a list`);
  if (length !== undefined && v.length !== length)
    fail(`expected ${what} to have ${length} elements, got ${v.length}`);
  return v;
}

/** A little-endian column of `count` numbers of `width` bytes: a reader of its elements. */
function column(v: unknown, what: string, width: 1 | 4 | 8, count: number): (i: number) => number {
  if (!(v instanceof Uint8Array)) fail(`expected ${what} to be binary`);
  if (v.byteLength !== count * width)
    fail(`expected ${what} to hold ${count} numbers of ${width} bytes, got ${v.byteLength} bytes`);
  const view = new DataView(v.buffer, v.byteOffset, v.byteLength);
  if (width === 1) return (i) => view.getUint8(i);
  if (width === 4) return (i) => view.getUint32(i * 4, true);
  return (i) => {
    const x = view.getFloat64(i * 8, true);
    if (!isCount(x)) fail(`expected ${what} to hold non-negative integers, got ${x}`);
    return x;
  };
}

/** Most steps a path written as a mask may have (a mask is a safe integer). */
const MAX_MASK_STEPS = 53;

/**
 * A flatten mapping as `.metadata` stores it: `true` for `[fqn]`; a number when the path is the
 * fqn split at its dots — bit i set where step i is a list index (DCP's fqns join the steps with
 * dots, so nested keys repeat the fqn's pieces); else the path itself.
 */
function encodePath(fqn: string, path: ObjectPath): ObjectPath | number | true {
  if (path.length === 1 && path[0] === fqn) return true;
  const parts = fqn.split(".");
  if (parts.length !== path.length || parts.length > MAX_MASK_STEPS) return path;
  let mask = 0;
  for (let i = 0; i < parts.length; i++) {
    const step = path[i]!;
    if (typeof step === "number") {
      if (String(step) !== parts[i]) return path;
      mask += 2 ** i;
    } else if (step !== parts[i]) return path;
  }
  return mask;
}

/** The path a mask stands for (see {@link encodePath}); `validateMetadata` checks it as any path. */
function splitPath(fqn: string, mask: number): ObjectPath {
  if (!isCount(mask) || mask >= 2 ** MAX_MASK_STEPS)
    fail(`expected a path mask for "${fqn}", got ${show(mask)}`);
  const path: (string | number)[] = fqn.split(".");
  if (path.length > MAX_MSGPACK_DEPTH || mask >= 2 ** path.length)
    fail(`expected a path mask of ${path.length} steps for "${fqn}", got ${mask}`);
  for (let i = 0; i < path.length; i++) {
    const part = path[i] as string;
    if (mask % 2 === 1) {
      const index = Number(part);
      if (!/^(0|[1-9][0-9]*)$/.test(part) || !isCount(index))
        fail(`expected step ${i} of "${fqn}" to be a list index, got ${show(part)}`);
      path[i] = index;
    }
    mask = Math.floor(mask / 2);
  }
  return path;
}

/** Decodes the columns of a version 2 body (see {@link encodeMetadata} and docs/format.md). */
function decodeColumns(top: Record<string, unknown>, algorithm: ChecksumAlgorithm): Metadata {
  const version = str(top.version, "version");
  const dtypes = list(top.dtypes, "dtypes").map((d) => {
    if (!isDType(d)) fail(`expected a dtype name in dtypes, got ${show(d)}`);
    return d as DType;
  });
  const entries = map(top.entries, "entries");
  const fqns = list(entries.fqn, "entries.fqn");
  const n = fqns.length;
  const dtypeOf = column(entries.dtype, "entries.dtype", 1, n);
  const ndimOf = column(entries.ndim, "entries.ndim", 1, n);
  const chunksOf = column(entries.chunks, "entries.chunks", 4, n);
  const paths = list(entries.path, "entries.path", n);
  let dims = 0;
  let chunkCount = 0;
  let chunkDims = 0;
  let values = 0;
  for (let i = 0; i < n; i++) {
    if (dtypeOf(i) === VALUE_DTYPE) values++;
    dims += ndimOf(i);
    chunkCount += chunksOf(i);
    chunkDims += chunksOf(i) * ndimOf(i);
  }
  const sizeOf = column(entries.size, "entries.size", 8, dims);
  const chunks = map(top.chunks, "chunks");
  const offsetAt = column(chunks.offsets, "chunks.offsets", 8, chunkDims);
  const chunkSizeAt = column(chunks.sizes, "chunks.sizes", 8, chunkDims);
  const files = list(top.files, "files").map((f) => str(f, "a data file path"));
  const storage = map(top.storage, "storage");
  const records = chunkCount + values;
  const fileOf = column(storage.file, "storage.file", 4, records);
  const fileOffsetOf = column(storage.offset, "storage.offset", 8, records);
  const lengthOf = column(storage.length, "storage.length", 8, records);
  const checksumOf = column(storage.checksum, "storage.checksum", 4, records);
  const formats = new Map<number, string>();
  for (const f of list(storage.itemFormats, "storage.itemFormats")) {
    if (!Array.isArray(f) || f.length !== 2 || !isCount(f[0]) || f[0] >= records)
      fail(`expected each of storage.itemFormats to be [record below ${records}, name], got ${show(f)}`);
    formats.set(f[0], str(f[1], "an item format name"));
  }
  const blocksOf = decodeBlocks(storage.blocks, records, lengthOf, formats);

  const stateDictMetadata = new Map<string, StorageMetadataEntry>();
  const storageData = new Map<string, StorageInfo>();
  const plannerData = new Map<string, ObjectPath>();
  let dim = 0;
  let chunkDim = 0;
  let rec = 0;
  const store = (fqn: string, offset: number[] | null) => {
    const file = fileOf(rec);
    if (file >= files.length)
      fail(`expected a data file index below ${files.length} for "${fqn}", got ${file}`);
    const length = lengthOf(rec);
    const itemFormat = formats.get(rec);
    const info: { -readonly [K in keyof StorageInfo]: StorageInfo[K] } =
      algorithm === "crc32"
        ? { relativePath: files[file]!, offset: fileOffsetOf(rec), length, crc32: checksumOf(rec) }
        : { relativePath: files[file]!, offset: fileOffsetOf(rec), length, crc32c: checksumOf(rec) };
    if (itemFormat !== undefined) info.itemFormat = itemFormat;
    const blocks = blocksOf.get(rec);
    if (blocks) info.checksumBlocks = blocks;
    storageData.set(metadataIndexKey({ fqn, offset }), info);
    rec++;
  };
  for (let i = 0; i < n; i++) {
    const fqn = str(fqns[i], "an fqn");
    if (stateDictMetadata.has(fqn)) fail(`duplicate entry "${fqn}"`);
    const path = paths[i];
    if (path === true) plannerData.set(fqn, [fqn]);
    else if (typeof path === "number") plannerData.set(fqn, splitPath(fqn, path));
    else if (path !== null) plannerData.set(fqn, path as ObjectPath);
    const d = dtypeOf(i);
    const ndim = ndimOf(i);
    const count = chunksOf(i);
    if (d === VALUE_DTYPE) {
      if (ndim !== 0 || count !== 0) fail(`expected the value "${fqn}" to have no dimensions and no chunks`);
      stateDictMetadata.set(fqn, { type: "bytes" });
      store(fqn, null);
      continue;
    }
    if (d >= dtypes.length) fail(`expected a dtype index below ${dtypes.length} for "${fqn}", got ${d}`);
    const dtype = dtypes[d]!;
    const size: number[] = [];
    for (let k = 0; k < ndim; k++) size.push(sizeOf(dim++));
    const chunkList: ChunkStorageMetadata[] = [];
    for (let c = 0; c < count; c++) {
      const offsets: number[] = [];
      const sizes: number[] = [];
      for (let k = 0; k < ndim; k++) {
        offsets.push(offsetAt(chunkDim));
        sizes.push(chunkSizeAt(chunkDim++));
      }
      chunkList.push({ offsets, sizes });
      store(fqn, offsets);
    }
    stateDictMetadata.set(fqn, { type: "tensor", properties: { dtype }, size, chunks: chunkList });
  }
  for (const p of list(top.plannerExtra, "plannerExtra")) {
    if (!Array.isArray(p) || p.length !== 2) fail("expected each plannerExtra entry to be [fqn, path]");
    plannerData.set(str(p[0], "an fqn"), p[1] as ObjectPath);
  }

  return {
    version,
    stateDictMetadata,
    plannerData,
    storageData,
    storageMeta: decodeStorageMeta(top.storageMeta),
  };
}

/**
 * Decodes `storage.blocks` (optional in layout version 2): `{ bytes, records, running }` — the block
 * size, the records (ascending) that have running checksums, and their values, each record's
 * `ceil(length / bytes) − 1` in turn. Only raw items (no item format) longer than one block have them.
 *
 * @returns each such record's running checksums; empty when the field is absent.
 */
function decodeBlocks(
  v: unknown,
  records: number,
  lengthOf: (i: number) => number,
  formats: ReadonlyMap<number, string>,
): Map<number, NonNullable<StorageInfo["checksumBlocks"]>> {
  const out = new Map<number, NonNullable<StorageInfo["checksumBlocks"]>>();
  if (v === undefined) return out;
  const blocks = map(v, "storage.blocks");
  const blockBytes = blocks.bytes;
  if (!isCount(blockBytes) || blockBytes === 0)
    fail(`expected storage.blocks.bytes to be a positive integer, got ${show(blockBytes)}`);
  if (!(blocks.records instanceof Uint8Array) || blocks.records.byteLength % 4 !== 0)
    fail("expected storage.blocks.records to be binary, 4 bytes per record");
  if (!(blocks.running instanceof Uint8Array) || blocks.running.byteLength % 4 !== 0)
    fail("expected storage.blocks.running to be binary, 4 bytes per checksum");
  const recordAt = column(blocks.records, "storage.blocks.records", 4, blocks.records.byteLength / 4);
  const available = blocks.running.byteLength / 4;
  const runningAt = column(blocks.running, "storage.blocks.running", 4, available);
  let used = 0;
  let previous = -1;
  for (let i = 0; i < blocks.records.byteLength / 4; i++) {
    const rec = recordAt(i);
    if (rec <= previous || rec >= records)
      fail(`expected storage.blocks.records to ascend below ${records}, got ${rec} after ${previous}`);
    previous = rec;
    if (formats.has(rec))
      fail(`expected no running checksums for record ${rec}, framed as ${formats.get(rec)}`);
    const length = lengthOf(rec);
    if (length <= blockBytes)
      fail(`expected running checksums only for items over ${blockBytes} bytes, record ${rec} has ${length}`);
    const count = Math.ceil(length / blockBytes) - 1;
    if (used + count > available)
      fail(
        `expected storage.blocks.running to hold the ${count} checksums of record ${rec}, ${available - used} left`,
      );
    const running: number[] = [];
    for (let k = 0; k < count; k++) running.push(runningAt(used + k));
    used += count;
    out.set(rec, { blockBytes, running });
  }
  if (used !== available)
    fail(`expected ${used} running checksums in storage.blocks.running, got ${available}`);
  return out;
}
