// `.metadata` layout versions 2 and 3 (docs/format.md) to and from `MetadataColumns`: the file's
// columns are copied into typed arrays and back, nothing is built per chunk.
import { CheckpointError } from "../errors.js";
import { type DType, isDType } from "../model/dtype.js";
import { MAX_MSGPACK_DEPTH } from "../model/msgpack-bounds.js";
import type { ObjectPath } from "../model/state-dict.js";
import { type Metadata, metadataIndexKey } from "../plan/metadata.js";
import { MetadataBuilder } from "../plan/metadata-builder.js";
import {
  type MetadataColumns,
  metadataColumns,
  type StorageColumns,
  VALUE_DTYPE,
} from "../plan/metadata-columns.js";
import type { ChecksumAlgorithm } from "./checksum.js";
import { decodeStorageMeta, fail, isCount, map, show, str } from "./metadata-checks.js";

/** Bytes of one content hash in `storage.hashes` (XXH3-128). */
const HASH_BYTES = 16;
/** Whether this platform's typed arrays are little-endian, as the file's columns. */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** A list field of the body. */
export function list(v: unknown, what: string, length?: number): unknown[] {
  if (!Array.isArray(v)) fail(`expected ${what} to be a list`);
  if (length !== undefined && v.length !== length)
    fail(`expected ${what} to have ${length} elements, got ${v.length}`);
  return v;
}

/** The bytes of a binary column of `count` numbers of `width` bytes, checked. */
function binary(v: unknown, what: string, width: 1 | 4 | 8, count: number): Uint8Array {
  if (!(v instanceof Uint8Array)) fail(`expected ${what} to be binary`);
  if (v.byteLength !== count * width)
    fail(`expected ${what} to hold ${count} numbers of ${width} bytes, got ${v.byteLength} bytes`);
  return v;
}

/** A little-endian column copied into a typed array of its width (aligned, platform order). */
function typed<A extends Uint8Array | Uint32Array | Float64Array>(
  bytes: Uint8Array,
  make: new (n: number) => A,
  width: 1 | 4 | 8,
): A {
  const out = new make(bytes.byteLength / width);
  if (LITTLE_ENDIAN || width === 1) new Uint8Array(out.buffer).set(bytes);
  else {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < out.length; i++)
      out[i] = width === 4 ? view.getUint32(i * 4, true) : view.getFloat64(i * 8, true);
  }
  return out;
}

/** `u8` column of `count`. */
function u8(v: unknown, what: string, count: number): Uint8Array {
  return typed(binary(v, what, 1, count), Uint8Array, 1);
}

/** `u32` column of `count`. */
function u32(v: unknown, what: string, count: number): Uint32Array {
  return typed(binary(v, what, 4, count), Uint32Array, 4);
}

/** `f64` column of `count` non-negative integers. */
function f64(v: unknown, what: string, count: number): Float64Array {
  const out = typed(binary(v, what, 8, count), Float64Array, 8);
  for (let i = 0; i < out.length; i++) {
    const x = out[i]!;
    if (!(Number.isSafeInteger(x) && x >= 0))
      fail(`expected ${what} to hold non-negative integers, got ${x}`);
  }
  return out;
}

/** A typed array's bytes in the file's order (little-endian). */
function fileBytes(a: Uint8Array | Uint32Array | Float64Array): Uint8Array {
  if (LITTLE_ENDIAN || a instanceof Uint8Array) return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const out = new Uint8Array(a.byteLength);
  const view = new DataView(out.buffer);
  for (let i = 0; i < a.length; i++)
    if (a instanceof Uint32Array) view.setUint32(i * 4, a[i]!, true);
    else view.setFloat64(i * 8, a[i]!, true);
  return out;
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

/**
 * The columns of any metadata: its own when it is columnar and has its storage entries, else
 * built from its maps (a user-built or PyTorch-read metadata).
 *
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when an item has no storage entry or no
 * checksum, items record different checksum algorithms or running-checksum block sizes, or a
 * tensor has more than 254 dimensions.
 */
export function columnsOf(metadata: Metadata): MetadataColumns {
  const own = metadataColumns(metadata);
  // The metadata's own fields win: a step may have replaced them (`{ ...metadata, storageMeta }`).
  if (own && (own.storage || own.records === 0))
    return {
      ...own,
      version: metadata.version,
      storageMeta: metadata.storageMeta,
      plannerData: metadata.plannerData,
    };
  const b = new MetadataBuilder({ version: metadata.version, storageMeta: metadata.storageMeta });
  const store = (item: number, fqn: string, key: string) => {
    const info = metadata.storageData.get(key);
    if (!info)
      throw new CheckpointError(
        "INVALID_ARGUMENT",
        `Expected a storage entry for every item, "${fqn}" has none`,
      );
    b.setStorage(item, info);
  };
  for (const [fqn, e] of metadata.stateDictMetadata) {
    if (e.type === "bytes") {
      store(b.addValue(fqn), fqn, metadataIndexKey({ fqn, offset: null }));
      continue;
    }
    const entry = b.addTensor(fqn, e.properties.dtype, e.size);
    for (const c of e.chunks)
      store(b.addChunk(entry, c.offsets, c.sizes), fqn, metadataIndexKey({ fqn, offset: c.offsets }));
  }
  for (const [fqn, path] of metadata.plannerData) b.setPath(fqn, path);
  return b.buildColumns();
}

/**
 * The bytes of the columns a body of `c` holds (the chunk, entry and storage columns), for sizing
 * the encoder's buffer; strings and lists are not counted.
 * @param c - the columns.
 */
export function columnsByteLength(c: MetadataColumns): number {
  const s = c.storage;
  let n = c.chunkOffsets.byteLength * 2 + c.entrySize.byteLength + c.fqns.length * 6;
  if (s)
    n +=
      c.records * 24 +
      (s.hashes?.byteLength ?? 0) +
      (s.base?.byteLength ?? 0) +
      s.blockRunning.byteLength * 2;
  return n;
}

/**
 * The body of a layout version 2 (or 3, with references) `.metadata` for columns with storage.
 * @param c - the columns.
 * @param format - the body's `format`.
 * @param versions - the layout versions written without and with references.
 * @param fallback - the checksum algorithm named when there is no item.
 */
export function columnsBody(
  c: MetadataColumns,
  format: string,
  versions: readonly [number, number],
  fallback: ChecksumAlgorithm,
): Record<string, unknown> {
  const n = c.fqns.length;
  const s = c.storage;
  const chunks = new Uint32Array(n);
  const paths: (ObjectPath | number | true | null)[] = new Array(n);
  // The mappings mostly list the entries' fqns in the entries' order (both come from one
  // flattening): walked beside the entries, each is found without a lookup.
  const mappings = c.plannerData.entries();
  let next = mappings.next();
  let inStep = 0;
  for (let e = 0; e < n; e++) {
    chunks[e] = c.entryChunkStart[e + 1]! - c.entryChunkStart[e]!;
    const fqn = c.fqns[e]!;
    let path: ObjectPath | undefined;
    if (!next.done && next.value[0] === fqn) {
      path = next.value[1];
      next = mappings.next();
      inStep++;
    } else path = c.plannerData.get(fqn);
    paths[e] = path === undefined ? null : encodePath(fqn, path);
  }
  // Every mapping met in step names an entry: only the others may be extra.
  const plannerExtra: [string, ObjectPath][] = [];
  if (inStep < c.plannerData.size)
    for (const [fqn, path] of c.plannerData) if (!c.entryOf.has(fqn)) plannerExtra.push([fqn, path]);
  const empty = new Uint8Array(0);
  const references = s !== undefined && s.bases.length > 0 && s.base !== undefined;
  let hashed = false;
  if (s?.hashes) for (let i = 0; i < s.hashes.length && !hashed; i++) hashed = s.hashes[i] !== 0;
  const itemFormats = s ? [...s.itemFormats].sort((a, b) => a[0] - b[0]) : [];
  return {
    format,
    formatVersion: references ? versions[1] : versions[0],
    checksum: s?.checksum ?? fallback,
    version: c.version,
    dtypes: c.dtypes,
    entries: {
      fqn: c.fqns,
      dtype: c.entryDtype,
      ndim: c.entryNdim,
      size: fileBytes(c.entrySize),
      chunks: fileBytes(chunks),
      path: paths,
    },
    chunks: { offsets: fileBytes(c.chunkOffsets), sizes: fileBytes(c.chunkSizes) },
    files: s?.files ?? [],
    ...(references ? { bases: s.bases } : {}),
    storage: {
      file: s ? fileBytes(s.file) : empty,
      offset: s ? fileBytes(s.offset) : empty,
      length: s ? fileBytes(s.length) : empty,
      checksum: s ? fileBytes(s.checksums) : empty,
      itemFormats,
      ...(s && s.blockBytes > 0
        ? {
            blocks: {
              bytes: s.blockBytes,
              records: fileBytes(s.blockRecords),
              running: fileBytes(s.blockRunning),
            },
          }
        : {}),
      ...(hashed ? { hashes: s!.hashes } : {}),
      ...(references ? { base: fileBytes(s.base!) } : {}),
    },
    plannerExtra,
    storageMeta: { ...c.storageMeta },
  };
}

/**
 * Decodes the columns of a version 2 or 3 body (docs/format.md) into {@link MetadataColumns},
 * checking every field's type, every column's length and every index into another field.
 *
 * @param top - the decoded msgpack map, its trailer, format and version checked.
 * @param algorithm - the body's `checksum`.
 * @param references - whether it is version 3 (with `bases` and `storage.base`).
 * @param versions - the layout versions, for messages.
 * @throws {@link MetadataError} `MALFORMED_METADATA` saying what was expected and found.
 */
export function decodeColumnsBody(
  top: Record<string, unknown>,
  algorithm: ChecksumAlgorithm,
  references: boolean,
  versions: readonly [number, number],
): MetadataColumns {
  const version = str(top.version, "version");
  const dtypes = list(top.dtypes, "dtypes").map((d) => {
    if (!isDType(d)) fail(`expected a dtype name in dtypes, got ${show(d)}`);
    return d as DType;
  });
  const entries = map(top.entries, "entries");
  const fqnList = list(entries.fqn, "entries.fqn");
  const n = fqnList.length;
  const entryDtype = u8(entries.dtype, "entries.dtype", n);
  const entryNdim = u8(entries.ndim, "entries.ndim", n);
  const entryChunks = u32(entries.chunks, "entries.chunks", n);
  const paths = list(entries.path, "entries.path", n);
  const entrySizeStart = new Uint32Array(n + 1);
  const entryChunkStart = new Uint32Array(n + 1);
  const entryChunkDim = new Uint32Array(n);
  const entryRecord = new Uint32Array(n);
  let dims = 0;
  let chunkCount = 0;
  let chunkDims = 0;
  let records = 0;
  for (let i = 0; i < n; i++) {
    const ndim = entryNdim[i]!;
    const count = entryChunks[i]!;
    entrySizeStart[i] = dims;
    entryChunkStart[i] = chunkCount;
    entryChunkDim[i] = chunkDims;
    entryRecord[i] = records;
    // Counted as the file lays them out; a value with dimensions or chunks is refused below.
    dims += ndim;
    chunkCount += count;
    chunkDims += count * ndim;
    records += count + (entryDtype[i] === VALUE_DTYPE ? 1 : 0);
  }
  entrySizeStart[n] = dims;
  entryChunkStart[n] = chunkCount;
  const entrySize = f64(entries.size, "entries.size", dims);
  const chunks = map(top.chunks, "chunks");
  const chunkOffsets = f64(chunks.offsets, "chunks.offsets", chunkDims);
  const chunkSizes = f64(chunks.sizes, "chunks.sizes", chunkDims);
  const files = list(top.files, "files").map((f) => str(f, "a data file path"));
  const storage = map(top.storage, "storage");
  const file = u32(storage.file, "storage.file", records);
  const offset = f64(storage.offset, "storage.offset", records);
  const length = f64(storage.length, "storage.length", records);
  const checksums = u32(storage.checksum, "storage.checksum", records);
  const itemFormats = new Map<number, string>();
  for (const f of list(storage.itemFormats, "storage.itemFormats")) {
    if (!Array.isArray(f) || f.length !== 2 || !isCount(f[0]) || f[0] >= records)
      fail(`expected each of storage.itemFormats to be [record below ${records}, name], got ${show(f)}`);
    itemFormats.set(f[0], str(f[1], "an item format name"));
  }
  const blocks = decodeBlocks(storage.blocks, records, length, itemFormats);
  let hashes: Uint8Array | undefined;
  if (storage.hashes !== undefined) {
    if (!(storage.hashes instanceof Uint8Array) || storage.hashes.byteLength !== records * HASH_BYTES)
      fail(`expected storage.hashes to be binary, ${HASH_BYTES} bytes for each of ${records} records`);
    hashes = Uint8Array.from(storage.hashes as Uint8Array);
  }
  if (!references && (top.bases !== undefined || storage.base !== undefined))
    fail(
      `expected no bases or storage.base in layout version ${versions[0]} (they come with version ${versions[1]})`,
    );
  const bases = references ? list(top.bases, "bases").map((b) => str(b, "a base checkpoint name")) : [];
  const base = references ? u32(storage.base, "storage.base", records) : undefined;

  // The decoded list is the fqn column itself once each is checked to be a string.
  const fqns = fqnList as string[];
  const entryOf = new Map<string, number>();
  const plannerData = new Map<string, ObjectPath>();
  for (let i = 0; i < n; i++) {
    const fqn = str(fqnList[i], "an fqn");
    entryOf.set(fqn, i);
    if (entryOf.size === i) fail(`duplicate entry "${fqn}"`); // one lookup: the set did not add
    const path = paths[i];
    if (path === true) plannerData.set(fqn, [fqn]);
    else if (typeof path === "number") plannerData.set(fqn, splitPath(fqn, path));
    else if (path !== null) plannerData.set(fqn, path as ObjectPath);
    const d = entryDtype[i]!;
    if (d === VALUE_DTYPE) {
      if (entryNdim[i] !== 0 || entryChunks[i] !== 0)
        fail(`expected the value "${fqn}" to have no dimensions and no chunks`);
    } else if (d >= dtypes.length)
      fail(`expected a dtype index below ${dtypes.length} for "${fqn}", got ${d}`);
    const end = i + 1 < n ? entryRecord[i + 1]! : records;
    for (let rec = entryRecord[i]!; rec < end; rec++) {
      if (file[rec]! >= files.length)
        fail(`expected a data file index below ${files.length} for "${fqn}", got ${file[rec]}`);
      if (base !== undefined && base[rec]! > bases.length)
        fail(`expected a base index up to ${bases.length} for "${fqn}", got ${base[rec]}`);
    }
  }
  for (const p of list(top.plannerExtra, "plannerExtra")) {
    if (!Array.isArray(p) || p.length !== 2) fail("expected each plannerExtra entry to be [fqn, path]");
    plannerData.set(str(p[0], "an fqn"), p[1] as ObjectPath);
  }
  const storageColumns: StorageColumns = {
    checksum: algorithm,
    files,
    bases,
    file,
    offset,
    length,
    checksums,
    base,
    hashes,
    itemFormats,
    ...blocks,
  };
  return {
    version,
    storageMeta: decodeStorageMeta(top.storageMeta),
    dtypes,
    fqns,
    entryOf,
    entryDtype,
    entryNdim,
    entrySizeStart,
    entrySize,
    entryChunkStart,
    entryChunkDim,
    entryRecord,
    chunkOffsets,
    chunkSizes,
    records,
    plannerData,
    storage: storageColumns,
  };
}

/**
 * Decodes `storage.blocks` (optional in layout version 2): `{ bytes, records, running }` — the block
 * size, the records (ascending) that have running checksums, and their values, each record's
 * `ceil(length / bytes) − 1` in turn. Only raw items (no item format) longer than one block have them.
 */
function decodeBlocks(
  v: unknown,
  records: number,
  length: Float64Array,
  formats: ReadonlyMap<number, string>,
): Pick<StorageColumns, "blockBytes" | "blockRecords" | "blockRunningStart" | "blockRunning"> {
  if (v === undefined)
    return {
      blockBytes: 0,
      blockRecords: new Uint32Array(0),
      blockRunningStart: new Uint32Array(1),
      blockRunning: new Uint32Array(0),
    };
  const blocks = map(v, "storage.blocks");
  const blockBytes = blocks.bytes;
  if (!isCount(blockBytes) || blockBytes === 0)
    fail(`expected storage.blocks.bytes to be a positive integer, got ${show(blockBytes)}`);
  if (!(blocks.records instanceof Uint8Array) || blocks.records.byteLength % 4 !== 0)
    fail("expected storage.blocks.records to be binary, 4 bytes per record");
  if (!(blocks.running instanceof Uint8Array) || blocks.running.byteLength % 4 !== 0)
    fail("expected storage.blocks.running to be binary, 4 bytes per checksum");
  const blockRecords = u32(blocks.records, "storage.blocks.records", blocks.records.byteLength / 4);
  const blockRunning = u32(blocks.running, "storage.blocks.running", blocks.running.byteLength / 4);
  const available = blockRunning.length;
  const blockRunningStart = new Uint32Array(blockRecords.length + 1);
  let used = 0;
  let previous = -1;
  for (let i = 0; i < blockRecords.length; i++) {
    const rec = blockRecords[i]!;
    if (rec <= previous || rec >= records)
      fail(`expected storage.blocks.records to ascend below ${records}, got ${rec} after ${previous}`);
    previous = rec;
    if (formats.has(rec))
      fail(`expected no running checksums for record ${rec}, framed as ${formats.get(rec)}`);
    const itemLength = length[rec]!;
    if (itemLength <= blockBytes)
      fail(
        `expected running checksums only for items over ${blockBytes} bytes, record ${rec} has ${itemLength}`,
      );
    const count = Math.ceil(itemLength / blockBytes) - 1;
    if (used + count > available)
      fail(
        `expected storage.blocks.running to hold the ${count} checksums of record ${rec}, ${available - used} left`,
      );
    used += count;
    blockRunningStart[i + 1] = used;
  }
  if (used !== available)
    fail(`expected ${used} running checksums in storage.blocks.running, got ${available}`);
  return { blockBytes, blockRecords, blockRunningStart, blockRunning };
}
