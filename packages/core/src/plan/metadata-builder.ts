import { CheckpointError } from "../errors.js";
import type { DType } from "../model/dtype.js";
import type { ObjectPath } from "../model/state-dict.js";
import {
  type Metadata,
  metadataIndexKey,
  type StorageInfo,
  type StorageMeta,
  type WriteResult,
} from "./metadata.js";
import {
  chunkPositionOf,
  columnarMetadata,
  type MetadataColumns,
  metadataColumns,
  type StorageColumns,
  VALUE_DTYPE,
} from "./metadata-columns.js";
import { RESULT_HASH_BYTES, type WriteResultColumns, writeResultColumns } from "./write-result-columns.js";

/** Most dimensions a tensor may have in `.metadata` (one byte of `entries.ndim`, as the codec). */
const MAX_NDIM = 0xfe;
/** Bytes of one content hash (XXH3-128). */
const HASH_BYTES = 16;

/** Options of {@link MetadataBuilder}. */
export interface MetadataBuilderOptions {
  /** The DCP metadata version followed. @default "1.0.0" */
  readonly version?: string;
  /** Ids of the save. @default {} */
  readonly storageMeta?: StorageMeta;
}

/** A typed array of one of the widths the builder keeps, grown by doubling. */
type Typed = Float64Array | Uint32Array | Uint8Array;

function grown<A extends Typed>(a: A, min: number): A {
  if (a.length >= min) return a;
  const next = new (a.constructor as new (n: number) => A)(Math.max(min, a.length * 2, 64));
  next.set(a as never);
  return next;
}

/**
 * Builds a columnar {@link Metadata} (see `MetadataColumns`) without an object per chunk: the save's
 * coordinator adds tensors, their chunks and values by numbers, the writer the stored items'
 * storage entries; {@link MetadataBuilder.build} returns the same DCP-shaped metadata
 * `decodeMetadata` does, which `encodeMetadata` writes by copying its columns. Chunks may be added
 * in any order (rank after rank); each tensor's chunks keep the order they were added in.
 *
 * Item ids ({@link MetadataBuilder.addChunk}, {@link MetadataBuilder.addValue}) count every chunk
 * and value added, from 0, in the order added.
 */
export class MetadataBuilder {
  readonly #version: string;
  #storageMeta: StorageMeta;
  readonly #fqns: string[] = [];
  readonly #entryOf = new Map<string, number>();
  readonly #dtypes: DType[] = [];
  readonly #dtypeIndex = new Map<DType, number>();
  readonly #entryDtype: number[] = [];
  readonly #entryNdim: number[] = [];
  readonly #entrySize: number[] = [];
  readonly #paths = new Map<string, ObjectPath>();
  #items = 0;
  /** Whether every item's entry is at or after the previous item's: then items are in record order. */
  #inOrder = true;
  #itemEntry = new Uint32Array(64);
  #itemDim = new Float64Array(64);
  #dims = 0;
  #offsets = new Float64Array(64);
  #sizes = new Float64Array(64);
  readonly #storage = new StorageWriter();

  /** @param options - see {@link MetadataBuilderOptions}. */
  constructor(options: MetadataBuilderOptions = {}) {
    this.#version = options.version ?? "1.0.0";
    this.#storageMeta = options.storageMeta ?? {};
  }

  /** How many items (chunks and values) have been added. */
  get items(): number {
    return this.#items;
  }

  /**
   * The entry of `fqn`, when it was added.
   * @param fqn - the fqn.
   */
  entryOf(fqn: string): number | undefined {
    return this.#entryOf.get(fqn);
  }

  /**
   * Makes room for `items` items (chunks and values) of `dims` chunk dimensions in all, so that a
   * builder whose size is known up front grows its columns once.
   * @param items - items in all.
   * @param dims - chunk dimensions in all (the sum of each chunk's tensor's dimensions). @default 0
   */
  reserve(items: number, dims = 0): void {
    this.#itemEntry = grown(this.#itemEntry, items);
    this.#itemDim = grown(this.#itemDim, items);
    this.#offsets = grown(this.#offsets, dims);
    this.#sizes = grown(this.#sizes, dims);
  }

  /** Sets the save's ids (`storageMeta`). @param storageMeta - the ids. */
  setStorageMeta(storageMeta: StorageMeta): void {
    this.#storageMeta = storageMeta;
  }

  #addEntry(fqn: string, dtype: number, ndim: number): number {
    if (this.#entryOf.has(fqn))
      throw new CheckpointError(
        "INVALID_ARGUMENT",
        `Expected each fqn once in the metadata, got "${fqn}" again`,
      );
    const e = this.#fqns.push(fqn) - 1;
    this.#entryOf.set(fqn, e);
    this.#entryDtype.push(dtype);
    this.#entryNdim.push(ndim);
    return e;
  }

  /**
   * Adds a tensor entry (DCP's `TensorStorageMetadata`) with no chunks yet.
   * @param fqn - its fqn.
   * @param dtype - its element type.
   * @param size - its global size in elements (at most 254 dimensions).
   * @returns its entry, for {@link MetadataBuilder.addChunk}.
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` when `fqn` was added before or `size` has more dimensions.
   */
  addTensor(fqn: string, dtype: DType, size: ArrayLike<number>): number {
    if (size.length > MAX_NDIM)
      throw new CheckpointError(
        "INVALID_ARGUMENT",
        `Expected at most ${MAX_NDIM} dimensions, "${fqn}" has ${size.length}`,
      );
    let d = this.#dtypeIndex.get(dtype);
    if (d === undefined) {
      d = this.#dtypes.push(dtype) - 1;
      this.#dtypeIndex.set(dtype, d);
    }
    const e = this.#addEntry(fqn, d, size.length);
    for (let i = 0; i < size.length; i++) this.#entrySize.push(size[i]!);
    return e;
  }

  #addItem(entry: number, ndim: number): number {
    const item = this.#items++;
    if (item > 0 && entry < this.#itemEntry[item - 1]!) this.#inOrder = false;
    if (item >= this.#itemEntry.length) {
      this.#itemEntry = grown(this.#itemEntry, item + 1);
      this.#itemDim = grown(this.#itemDim, item + 1);
    }
    this.#itemEntry[item] = entry;
    this.#itemDim[item] = this.#dims;
    this.#dims += ndim;
    if (this.#dims > this.#offsets.length) {
      this.#offsets = grown(this.#offsets, this.#dims);
      this.#sizes = grown(this.#sizes, this.#dims);
    }
    return item;
  }

  /**
   * Adds a non-tensor value (DCP's `BytesStorageMetadata`): an entry and its one item.
   * @param fqn - its fqn.
   * @returns its item id.
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` when `fqn` was added before.
   */
  addValue(fqn: string): number {
    return this.#addItem(this.#addEntry(fqn, VALUE_DTYPE, 0), 0);
  }

  /**
   * Adds a chunk (DCP's `ChunkStorageMetadata`) to a tensor entry: its offsets and sizes are the
   * entry's number of dimensions of numbers read from `offsets` at `at` and `sizes` at `sizesAt`
   * (one pool may hold both, as a save plan's boxes do).
   * @param entry - the tensor's entry ({@link MetadataBuilder.addTensor}).
   * @param offsets - where the chunk starts, elements per dimension.
   * @param sizes - its size, elements per dimension.
   * @param at - where its offsets start in `offsets`. @default 0
   * @param sizesAt - where its sizes start in `sizes`. @default at
   * @returns its item id.
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` when `entry` is not a tensor entry.
   */
  addChunk(
    entry: number,
    offsets: ArrayLike<number>,
    sizes: ArrayLike<number>,
    at = 0,
    sizesAt = at,
  ): number {
    const ndim = this.#entryNdim[entry];
    if (ndim === undefined || this.#entryDtype[entry] === VALUE_DTYPE)
      throw new CheckpointError("INVALID_ARGUMENT", `Expected a tensor entry, got ${entry}`);
    const item = this.#addItem(entry, ndim);
    const to = this.#itemDim[item]!;
    for (let d = 0; d < ndim; d++) {
      this.#offsets[to + d] = offsets[at + d]!;
      this.#sizes[to + d] = sizes[sizesAt + d]!;
    }
    return item;
  }

  /**
   * Sets the path of `fqn` in the nested state dict (DCP's flatten mapping, `plannerData`).
   * @param fqn - an entry's fqn, or another key's.
   * @param path - its path.
   */
  setPath(fqn: string, path: ObjectPath): void {
    this.#paths.set(fqn, path);
  }

  /**
   * Records where item `item`'s bytes were stored (read, not kept).
   * @param item - the item id.
   * @param info - its storage entry, with a CRC-32 or CRC-32C.
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` when it has no checksum, another checksum
   * algorithm or running-checksum block size than the items before, or `item` is not an item.
   */
  setStorage(item: number, info: StorageInfo): void {
    if (!(item >= 0 && item < this.#items))
      throw new CheckpointError("INVALID_ARGUMENT", `Expected an item id below ${this.#items}, got ${item}`);
    this.#storage.set(item, info, this.#fqns[this.#itemEntry[item]!]!);
  }

  /**
   * The metadata: columnar (`metadataColumns` finds its columns), each tensor's chunks in the
   * order added, entries in the order added, storage entries where every item has one.
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` when some items have storage entries and others not.
   */
  build(): Metadata {
    return columnarMetadata(this.buildColumns());
  }

  /** The columns {@link MetadataBuilder.build} stands on. @throws as {@link MetadataBuilder.build}. */
  buildColumns(): MetadataColumns {
    const n = this.#fqns.length;
    const items = this.#items;
    const counts = new Uint32Array(n);
    for (let i = 0; i < items; i++) counts[this.#itemEntry[i]!]!++;
    const entryChunkStart = new Uint32Array(n + 1);
    const entryChunkDim = new Uint32Array(n);
    const entryRecord = new Uint32Array(n);
    const entrySizeStart = new Uint32Array(n + 1);
    let chunks = 0;
    let dims = 0;
    let records = 0;
    for (let e = 0; e < n; e++) {
      const ndim = this.#entryNdim[e]!;
      entryChunkStart[e] = chunks;
      entryChunkDim[e] = dims;
      entryRecord[e] = records;
      entrySizeStart[e + 1] = entrySizeStart[e]! + ndim;
      records += counts[e]!;
      if (this.#entryDtype[e] !== VALUE_DTYPE) {
        chunks += counts[e]!;
        dims += counts[e]! * ndim;
      }
    }
    entryChunkStart[n] = chunks;
    // Each item's record: its entry's next. Items added entry after entry are their records.
    const inOrder = this.#inOrder;
    const next = Uint32Array.from(entryRecord);
    const recordOf = inOrder ? undefined : new Uint32Array(items);
    const chunkOffsets = inOrder ? this.#offsets.slice(0, dims) : new Float64Array(dims);
    const chunkSizes = inOrder ? this.#sizes.slice(0, dims) : new Float64Array(dims);
    for (let i = 0; !inOrder && i < items; i++) {
      const e = this.#itemEntry[i]!;
      const record = next[e]!++;
      recordOf![i] = record;
      const ndim = this.#entryNdim[e]!;
      if (ndim === 0) continue;
      const to = entryChunkDim[e]! + (record - entryRecord[e]!) * ndim;
      const from = this.#itemDim[i]!;
      for (let d = 0; d < ndim; d++) {
        chunkOffsets[to + d] = this.#offsets[from + d]!;
        chunkSizes[to + d] = this.#sizes[from + d]!;
      }
    }
    return {
      version: this.#version,
      storageMeta: this.#storageMeta,
      dtypes: [...this.#dtypes],
      fqns: [...this.#fqns],
      entryOf: new Map(this.#entryOf),
      entryDtype: Uint8Array.from(this.#entryDtype),
      entryNdim: Uint8Array.from(this.#entryNdim),
      entrySizeStart,
      entrySize: Float64Array.from(this.#entrySize),
      entryChunkStart,
      entryChunkDim,
      entryRecord,
      chunkOffsets,
      chunkSizes,
      records,
      plannerData: new Map(this.#paths),
      storage: this.#storageColumns(recordOf),
    };
  }

  #storageColumns(recordOf: Uint32Array | undefined): MetadataColumns["storage"] {
    const missing = this.#storage.missing(this.#items);
    if (missing === -1) return undefined;
    if (missing !== undefined)
      throw new CheckpointError(
        "INVALID_ARGUMENT",
        `Expected a storage entry for every item, "${this.#fqns[this.#itemEntry[missing]!]}" has none`,
      );
    return this.#storage.columns(this.#items, recordOf);
  }
}

/** Storage entries by item, kept as columns (see `StorageColumns`). */
class StorageWriter {
  #stored = 0;
  #has = new Uint8Array(0);
  #file = new Uint32Array(0);
  #fileOffset = new Float64Array(0);
  #length = new Float64Array(0);
  #checksum = new Uint32Array(0);
  #base = new Uint32Array(0);
  #hashes: Uint8Array | undefined;
  readonly #files: string[] = [];
  readonly #fileIndex = new Map<string, number>();
  readonly #bases: string[] = [];
  readonly #baseIndex = new Map<string, number>();
  readonly #itemFormats = new Map<number, string>();
  readonly #blocks = new Map<number, readonly number[]>();
  #blockBytes = 0;
  #algorithm: "crc32" | "crc32c" | undefined;

  /** Room for `n` items. */
  reserve(n: number): void {
    if (n <= this.#has.length) return;
    const size = Math.max(n, this.#has.length * 2, 64);
    this.#has = grown(this.#has, size);
    this.#file = grown(this.#file, size);
    this.#fileOffset = grown(this.#fileOffset, size);
    this.#length = grown(this.#length, size);
    this.#checksum = grown(this.#checksum, size);
    this.#base = grown(this.#base, size);
  }

  /** Whether `item` has a storage entry. */
  has(item: number): boolean {
    return this.#has[item] === 1;
  }

  /** -1 when no item of `items` has an entry, undefined when all have, else the first without. */
  missing(items: number): number | undefined {
    if (this.#stored === 0) return items === 0 ? undefined : -1;
    if (this.#stored >= items) return undefined;
    let i = 0;
    while (this.#has[i] === 1) i++;
    return i;
  }

  /** The id of data file `relativePath` in the columns. */
  fileId(relativePath: string): number {
    let file = this.#fileIndex.get(relativePath);
    if (file === undefined) {
      file = this.#files.push(relativePath) - 1;
      this.#fileIndex.set(relativePath, file);
    }
    return file;
  }

  /** Records item `item`'s file id, offset, length and CRC of `algorithm` — one algorithm per checkpoint. */
  #record(
    item: number,
    file: number,
    offset: number,
    length: number,
    algorithm: "crc32" | "crc32c",
    crc: number,
    fqn: string,
  ): void {
    this.#algorithm ??= algorithm;
    if (algorithm !== this.#algorithm)
      throw new CheckpointError(
        "INVALID_ARGUMENT",
        `Expected every item of a dcpjs checkpoint to record one checksum algorithm (${this.#algorithm}), "${fqn}" has ${algorithm}`,
      );
    this.reserve(item + 1);
    if (this.#has[item] === 0) this.#stored++;
    this.#has[item] = 1;
    this.#file[item] = file;
    this.#fileOffset[item] = offset;
    this.#length[item] = length;
    this.#checksum[item] = crc;
  }

  /**
   * Records item `item`'s place and sums from numbers (no base, item format or running
   * checksums): file id ({@link StorageWriter.fileId}), offset and length in bytes, its CRC of
   * `algorithm`, and its content hash read from `hashes` at `hashAt` (none when undefined).
   * `fqn` names it in messages. @throws as `MetadataBuilder.setStorage`.
   */
  setColumns(
    item: number,
    file: number,
    offset: number,
    length: number,
    algorithm: "crc32" | "crc32c",
    crc: number,
    hashes: Uint8Array | undefined,
    hashAt: number,
    fqn: string,
  ): void {
    this.#record(item, file, offset, length, algorithm, crc, fqn);
    this.#base[item] = 0;
    if (hashes !== undefined) {
      this.#hashes = grown(this.#hashes ?? new Uint8Array(0), this.#has.length * HASH_BYTES);
      this.#hashes.set(hashes.subarray(hashAt, hashAt + HASH_BYTES), item * HASH_BYTES);
    } else if (this.#hashes && item * HASH_BYTES < this.#hashes.length)
      this.#hashes.fill(0, item * HASH_BYTES, (item + 1) * HASH_BYTES);
    if (this.#itemFormats.size > 0) this.#itemFormats.delete(item);
    if (this.#blocks.size > 0) this.#blocks.delete(item);
  }

  /** Records item `item`'s entry; `fqn` names it in messages. @throws as `MetadataBuilder.setStorage`. */
  set(item: number, info: StorageInfo, fqn: string): void {
    const algorithm = info.crc32 !== undefined ? "crc32" : info.crc32c !== undefined ? "crc32c" : undefined;
    if (algorithm === undefined)
      throw new CheckpointError(
        "INVALID_ARGUMENT",
        `Expected a CRC-32 or CRC-32C for every item of a dcpjs checkpoint, "${fqn}" has none`,
      );
    const crc = (algorithm === "crc32" ? info.crc32 : info.crc32c)!;
    this.#record(item, this.fileId(info.relativePath), info.offset, info.length, algorithm, crc, fqn);
    let base = 0;
    if (info.baseCheckpoint !== undefined) {
      base = this.#baseIndex.get(info.baseCheckpoint) ?? 0;
      if (base === 0) {
        base = this.#bases.push(info.baseCheckpoint);
        this.#baseIndex.set(info.baseCheckpoint, base);
      }
    }
    this.#base[item] = base;
    if (info.contentHash !== undefined) {
      if (!/^[0-9a-f]{32}$/.test(info.contentHash))
        throw new CheckpointError(
          "INVALID_ARGUMENT",
          `Expected a content hash of 32 lowercase hex digits, got ${JSON.stringify(info.contentHash)}`,
        );
      this.#hashes = grown(this.#hashes ?? new Uint8Array(0), this.#has.length * HASH_BYTES);
      for (let i = 0; i < HASH_BYTES; i++)
        this.#hashes[item * HASH_BYTES + i] = Number.parseInt(info.contentHash.slice(2 * i, 2 * i + 2), 16);
    } else if (this.#hashes && item * HASH_BYTES < this.#hashes.length)
      this.#hashes.fill(0, item * HASH_BYTES, (item + 1) * HASH_BYTES);
    if (info.itemFormat !== undefined && info.itemFormat !== "dcpjs")
      this.#itemFormats.set(item, info.itemFormat);
    else if (this.#itemFormats.size > 0) this.#itemFormats.delete(item);
    if (info.checksumBlocks) {
      if (this.#blockBytes === 0) this.#blockBytes = info.checksumBlocks.blockBytes;
      if (info.checksumBlocks.blockBytes !== this.#blockBytes)
        throw new CheckpointError(
          "INVALID_ARGUMENT",
          `Expected every item's running checksums to use one block size (${this.#blockBytes} bytes), "${fqn}" uses ${info.checksumBlocks.blockBytes}`,
        );
      this.#blocks.set(item, info.checksumBlocks.running);
    } else if (this.#blocks.size > 0) this.#blocks.delete(item);
  }

  /**
   * The columns, record by record: item `i` is record `recordOf[i]` (the identity when undefined).
   * @param items - how many items (all with entries).
   * @param recordOf - each item's record.
   */
  columns(items: number, recordOf: Uint32Array | undefined): StorageColumns {
    const file = new Uint32Array(items);
    const offset = new Float64Array(items);
    const length = new Float64Array(items);
    const checksums = new Uint32Array(items);
    const base = this.#bases.length > 0 ? new Uint32Array(items) : undefined;
    const hashes = this.#hashes ? new Uint8Array(items * HASH_BYTES) : undefined;
    const itemOf = new Uint32Array(items);
    if (recordOf === undefined) {
      file.set(this.#file.subarray(0, items));
      offset.set(this.#fileOffset.subarray(0, items));
      length.set(this.#length.subarray(0, items));
      checksums.set(this.#checksum.subarray(0, items));
      base?.set(this.#base.subarray(0, items));
      hashes?.set(this.#hashes!.subarray(0, Math.min(items * HASH_BYTES, this.#hashes!.length)));
      for (let i = 0; i < items; i++) itemOf[i] = i;
    } else
      for (let i = 0; i < items; i++) {
        const r = recordOf[i]!;
        itemOf[r] = i;
        file[r] = this.#file[i]!;
        offset[r] = this.#fileOffset[i]!;
        length[r] = this.#length[i]!;
        checksums[r] = this.#checksum[i]!;
        if (base) base[r] = this.#base[i]!;
        if (hashes && (i + 1) * HASH_BYTES <= this.#hashes!.length)
          hashes.set(this.#hashes!.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES), r * HASH_BYTES);
      }
    const itemFormats = new Map<number, string>();
    for (const [i, name] of this.#itemFormats) itemFormats.set(recordOf ? recordOf[i]! : i, name);
    const blockRecords: number[] = [];
    const blockRunningStart: number[] = [0];
    const running: number[] = [];
    if (this.#blocks.size > 0)
      for (let r = 0; r < items; r++) {
        const values = this.#blocks.get(itemOf[r]!);
        if (!values) continue;
        blockRecords.push(r);
        for (const v of values) running.push(v);
        blockRunningStart.push(running.length);
      }
    return {
      checksum: this.#algorithm ?? "crc32",
      files: [...this.#files],
      bases: [...this.#bases],
      file,
      offset,
      length,
      checksums,
      base,
      hashes,
      itemFormats,
      blockBytes: this.#blockBytes,
      blockRecords: Uint32Array.from(blockRecords),
      blockRunningStart: Uint32Array.from(blockRunningStart),
      blockRunning: Uint32Array.from(running),
    };
  }
}

/**
 * `metadata` with every written item's storage entry added, as a writer's `finish` commits it
 * (DCP's `finish` fills `storage_data` from the write results). A columnar metadata without
 * storage entries whose results cover every item stays columnar (no map of an entry per item);
 * any other gets a new `storageData` map, as before.
 *
 * @param metadata - the global plan's metadata.
 * @param results - every rank's write results.
 */
export function withWriteResults(metadata: Metadata, results: readonly (readonly WriteResult[])[]): Metadata {
  const columns = metadataColumns(metadata);
  const total = results.reduce((n, r) => n + r.length, 0);
  if (columns && columns.storage === undefined && total === columns.records) {
    const resultColumns = results.map(writeResultColumns);
    if (resultColumns.every((r) => r !== undefined)) {
      try {
        const storaged = columnarWithResultColumns(metadata, columns, resultColumns);
        if (storaged) return storaged;
      } catch {
        // As below: the objects' path decides.
      }
    }
    try {
      const storaged = columnarWithResults(metadata, columns, results);
      if (storaged) return storaged;
    } catch {
      // An entry the columns cannot hold (no checksum, say): the maps keep it, and encoding says what is wrong.
    }
  }
  const storageData = new Map(metadata.storageData);
  for (const rank of results) for (const r of rank) storageData.set(metadataIndexKey(r.index), r.storageData);
  return { ...metadata, storageData };
}

/** The columns with the results' storage entries, or undefined when they do not name each record once. */
function columnarWithResults(
  metadata: Metadata,
  c: MetadataColumns,
  results: readonly (readonly WriteResult[])[],
): Metadata | undefined {
  const storage = new StorageWriter();
  storage.reserve(c.records);
  for (const rank of results)
    for (const r of rank) {
      const e = c.entryOf.get(r.index.fqn);
      if (e === undefined) return undefined;
      let record: number;
      if (c.entryDtype[e] === VALUE_DTYPE) {
        if (r.index.offset !== null) return undefined;
        record = c.entryRecord[e]!;
      } else {
        if (r.index.offset === null) return undefined;
        const k = chunkPositionOf(metadata, e, r.index.offset, r.index.index);
        if (k === undefined) return undefined;
        record = c.entryRecord[e]! + k;
      }
      if (storage.has(record)) return undefined;
      storage.set(record, r.storageData, r.index.fqn);
    }
  if (storage.missing(c.records) !== undefined) return undefined;
  return columnarMetadata({ ...c, storage: storage.columns(c.records, undefined) });
}

/**
 * The columns with the storage entries of write results held as columns (`WriteResultColumns`,
 * from a writer that wrote a plan over columns): each result's record found from its plan item's
 * fqn id and index hint (checked against the chunk's offsets), its numbers copied — no object per
 * item. Undefined when they do not name each record once.
 */
function columnarWithResultColumns(
  metadata: Metadata,
  c: MetadataColumns,
  results: readonly WriteResultColumns[],
): Metadata | undefined {
  const storage = new StorageWriter();
  storage.reserve(c.records);
  for (const r of results) {
    const plan = r.plan;
    // Each plan fqn's entry, looked up once: -2 not yet, -1 none.
    const entries = new Int32Array(plan.fqns.length).fill(-2);
    const files = r.files.map((f) => storage.fileId(f));
    const kept = r.extra.size > 0;
    for (let k = 0; k < r.items.length; k++) {
      const j = r.items[k]!;
      const f = plan.fqnIds[j]!;
      let e = entries[f]!;
      if (e === -2) {
        // Plans whose fqns come in the metadata's order (one rank; FSDP, where every rank holds
        // every fqn) find each entry at its own position, with no lookup by name.
        const fqn = plan.fqns[f]!;
        e = c.fqns[f] === fqn ? f : (c.entryOf.get(fqn) ?? -1);
        entries[f] = e;
      }
      if (e < 0) return undefined;
      let record: number;
      if (c.entryDtype[e] === VALUE_DTYPE) {
        if (plan.types[j] !== 2) return undefined;
        record = c.entryRecord[e]!;
      } else {
        const nd = c.entryNdim[e]!;
        if (plan.types[j] === 2 || plan.shapeStarts[f + 1]! - plan.shapeStarts[f]! !== nd) return undefined;
        const b = plan.boxStarts[j]!;
        const hint = plan.chunkIndex?.[j] ?? -1;
        let position: number | undefined;
        if (hint >= 0 && hint < c.entryChunkStart[e + 1]! - c.entryChunkStart[e]!) {
          const at = c.entryChunkDim[e]! + hint * nd;
          let same = true;
          for (let d = 0; d < nd && same; d++) same = c.chunkOffsets[at + d] === plan.boxes[b + d];
          if (same) position = hint;
        }
        position ??= chunkPositionOf(metadata, e, Array.from(plan.boxes.subarray(b, b + nd)), undefined);
        if (position === undefined) return undefined;
        record = c.entryRecord[e]! + position;
      }
      if (storage.has(record)) return undefined;
      const whole = kept ? r.extra.get(k) : undefined;
      if (whole !== undefined) storage.set(record, whole.storageData, plan.fqns[f]!);
      else
        storage.setColumns(
          record,
          files[r.file[k]!]!,
          r.offset[k]!,
          r.length[k]!,
          r.algorithm,
          r.checksums[k]!,
          r.hasHash[k] === 1 ? r.hashes : undefined,
          k * RESULT_HASH_BYTES,
          plan.fqns[f]!,
        );
    }
  }
  if (storage.missing(c.records) !== undefined) return undefined;
  return columnarMetadata({ ...c, storage: storage.columns(c.records, undefined) });
}
