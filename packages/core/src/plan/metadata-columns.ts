// The engine's working form of a checkpoint's metadata: typed columns, one row per entry, chunk
// and stored item, as `.metadata` lays them out on disk (docs/format.md, layout version 2). The
// public `Metadata` maps of a columnar metadata are views materialised on demand.
import type { DType } from "../model/dtype.js";
import { BoxIndex, offsetKey } from "../model/geometry.js";
import type { ObjectPath } from "../model/state-dict.js";
import {
  type ChunkStorageMetadata,
  type Metadata,
  metadataIndexKey,
  type StorageInfo,
  type StorageMeta,
  type StorageMetadataEntry,
} from "./metadata.js";

/** `MetadataColumns.entryDtype` of a non-tensor value (DCP's `BytesStorageMetadata`), as `.metadata`'s `entries.dtype`. */
export const VALUE_DTYPE = 0xff;

/**
 * Where every stored item's bytes are, one row per item ("record") in entry order — a tensor's
 * chunks in chunk order, a value's one item — as `.metadata`'s `storage` columns.
 */
export interface StorageColumns {
  /** The algorithm of {@link StorageColumns.checksums}. */
  readonly checksum: "crc32" | "crc32c";
  /** The data files, relative to the checkpoint (a referenced item's: to its base). */
  readonly files: readonly string[];
  /** The sibling checkpoints items reference, indexed from 1 by {@link StorageColumns.base}. */
  readonly bases: readonly string[];
  /** Per record: an index into {@link StorageColumns.files}. */
  readonly file: Uint32Array;
  /** Per record: the item's byte offset in its file. */
  readonly offset: Float64Array;
  /** Per record: the item's length in bytes. */
  readonly length: Float64Array;
  /** Per record: the item's CRC (unsigned 32-bit). */
  readonly checksums: Uint32Array;
  /** Per record: 0, or k for an item in the files of `bases[k − 1]`; undefined when none references. */
  readonly base: Uint32Array | undefined;
  /** Per record: XXH3-128 content hash, 16 bytes (all zero for none); undefined when none has one. */
  readonly hashes: Uint8Array | undefined;
  /** Record → item format name, for items framed by another format than dcpjs's raw bytes. */
  readonly itemFormats: ReadonlyMap<number, string>;
  /** Block size of the running checksums (bytes); 0 when no item has them. */
  readonly blockBytes: number;
  /** The records (ascending) that have running checksums. */
  readonly blockRecords: Uint32Array;
  /** Per block record, where its running checksums start in {@link StorageColumns.blockRunning}; one more than records. */
  readonly blockRunningStart: Uint32Array;
  /** The running checksums of every block record in turn. */
  readonly blockRunning: Uint32Array;
}

/**
 * A checkpoint's metadata as columns: what `decodeMetadata` and `MetadataBuilder` produce, behind
 * a DCP-shaped {@link Metadata} ({@link columnarMetadata}); find it with {@link metadataColumns}.
 * Entry `i`'s chunks are the chunk numbers `[entryChunkStart[i], entryChunkStart[i + 1])`; chunk
 * `k` of entry `i` has its `entryNdim[i]` offsets and sizes at `entryChunkDim[i] + k · ndim` in
 * {@link MetadataColumns.chunkOffsets} / {@link MetadataColumns.chunkSizes}, and its stored item is
 * record `entryRecord[i] + k` (a value's is `entryRecord[i]`).
 */
export interface MetadataColumns {
  /** The DCP format version followed (`"1.0.0"`). */
  readonly version: string;
  /** Ids of the save. */
  readonly storageMeta: StorageMeta;
  /** The dtypes used, indexed by {@link MetadataColumns.entryDtype}. */
  readonly dtypes: readonly DType[];
  /** Per entry: its fqn. */
  readonly fqns: readonly string[];
  /** fqn → entry. */
  readonly entryOf: ReadonlyMap<string, number>;
  /** Per entry: an index into {@link MetadataColumns.dtypes}, or {@link VALUE_DTYPE}. */
  readonly entryDtype: Uint8Array;
  /** Per entry: the tensor's number of dimensions (0 for a value). */
  readonly entryNdim: Uint8Array;
  /** Per entry, and one more: where its global size starts in {@link MetadataColumns.entrySize}. */
  readonly entrySizeStart: Uint32Array;
  /** Every tensor's global size in elements, entry after entry. */
  readonly entrySize: Float64Array;
  /** Per entry, and one more: its first chunk number. */
  readonly entryChunkStart: Uint32Array;
  /** Per entry: where its chunks' numbers start in the chunk columns. */
  readonly entryChunkDim: Uint32Array;
  /** Per entry: its first record. */
  readonly entryRecord: Uint32Array;
  /** Every chunk's offsets (elements), entry after entry, chunk after chunk. */
  readonly chunkOffsets: Float64Array;
  /** Every chunk's sizes (elements), laid out as the offsets. */
  readonly chunkSizes: Float64Array;
  /** Stored items: chunks and values. */
  readonly records: number;
  /** fqn → its path in the nested state dict (DCP's flatten mappings), entries and extra keys. */
  readonly plannerData: ReadonlyMap<string, ObjectPath>;
  /** Where each record's bytes are; undefined before the save has written them (a global plan's metadata). */
  readonly storage: StorageColumns | undefined;
}

/** What a columnar {@link Metadata} keeps beside its views. */
interface ColumnState {
  readonly columns: MetadataColumns;
  /** Per entry: fqn's offset key → chunk position, built on first lookup by offsets. */
  readonly byOffsets: (Map<string, number> | undefined)[];
  /** Per entry: the index of its chunks, built on first use. */
  readonly indexes: (BoxIndex | undefined)[];
  /** Per record: its storage entry, materialised on first read. */
  infos: (StorageInfo | undefined)[] | undefined;
  /** Per entry: its chunk list, materialised on first read. */
  readonly chunkLists: (ChunkStorageMetadata[] | undefined)[];
  /** Per entry: its `stateDictMetadata` entry, materialised on first read. */
  readonly entries: (StorageMetadataEntry | undefined)[];
  /** The metadata's `storageData`: the view over the storage columns, or an empty map before there are any. */
  storageData: ReadonlyMap<string, StorageInfo>;
}

/**
 * The columns behind each columnar metadata, by its `stateDictMetadata` map (made for it alone).
 * Keyed by the map rather than the metadata, so that `{ ...metadata, storageMeta }` stays columnar.
 */
const columnStates = new WeakMap<ReadonlyMap<string, StorageMetadataEntry>, ColumnState>();

/** The view of {@link Metadata.storageData} over a metadata's columns. */
class ColumnStorageData implements ReadonlyMap<string, StorageInfo> {
  readonly state: ColumnState;

  constructor(state: ColumnState) {
    this.state = state;
  }

  get size(): number {
    return this.state.columns.storage ? this.state.columns.records : 0;
  }

  get(key: string): StorageInfo | undefined {
    const c = this.state.columns;
    if (!c.storage) return undefined;
    const cut = key.lastIndexOf("\u0000");
    if (cut < 0) return undefined;
    const entry = c.entryOf.get(key.slice(0, cut));
    if (entry === undefined) return undefined;
    const rest = key.slice(cut + 1);
    if (c.entryDtype[entry] === VALUE_DTYPE)
      return rest === "" ? storageInfoAt(this.state, c.entryRecord[entry]!) : undefined;
    const k = offsetLookup(this.state, entry).get(rest);
    return k === undefined ? undefined : storageInfoAt(this.state, c.entryRecord[entry]! + k);
  }

  has(key: string): boolean {
    return this.get(key) !== undefined;
  }

  *entries_(): IterableIterator<[string, StorageInfo]> {
    const c = this.state.columns;
    if (!c.storage) return;
    for (let e = 0; e < c.fqns.length; e++) {
      const fqn = c.fqns[e]!;
      const record = c.entryRecord[e]!;
      if (c.entryDtype[e] === VALUE_DTYPE) {
        yield [metadataIndexKey({ fqn, offset: null }), storageInfoAt(this.state, record)];
        continue;
      }
      const count = c.entryChunkStart[e + 1]! - c.entryChunkStart[e]!;
      for (let k = 0; k < count; k++)
        yield [
          metadataIndexKey({ fqn, offset: chunkOffsetsAt(c, e, k) }),
          storageInfoAt(this.state, record + k),
        ];
    }
  }

  entries(): MapIterator<[string, StorageInfo]> {
    return this.entries_() as MapIterator<[string, StorageInfo]>;
  }

  *keys(): MapIterator<string> {
    for (const [k] of this.entries_()) yield k;
  }

  *values(): MapIterator<StorageInfo> {
    const c = this.state.columns;
    if (!c.storage) return;
    for (let r = 0; r < c.records; r++) yield storageInfoAt(this.state, r);
  }

  forEach(
    fn: (value: StorageInfo, key: string, map: ReadonlyMap<string, StorageInfo>) => void,
    thisArg?: unknown,
  ): void {
    for (const [k, v] of this.entries_()) fn.call(thisArg, v, k, this);
  }

  [Symbol.iterator](): MapIterator<[string, StorageInfo]> {
    return this.entries();
  }
}

/**
 * The columns behind a metadata, when it is a columnar one ({@link columnarMetadata}) whose maps
 * have not been replaced since (a `{ ...metadata, storageData }` is not); undefined for a metadata
 * built from maps. Engine code reads the columns when there are some, the maps otherwise.
 *
 * @param metadata - any metadata.
 */
export function metadataColumns(metadata: Metadata | undefined): MetadataColumns | undefined {
  if (metadata === undefined) return undefined;
  const state = columnStates.get(metadata.stateDictMetadata);
  return state !== undefined && state.storageData === metadata.storageData ? state.columns : undefined;
}

function stateOf(metadata: Metadata): ColumnState {
  return columnStates.get(metadata.stateDictMetadata)!;
}

/**
 * The view of {@link Metadata.stateDictMetadata} over a metadata's columns: a `Map` (so that it
 * compares, copies and iterates as one) whose entries are built when first read — one object per
 * fqn, its `chunks` list built when first read — and kept, so a second read gives the same object.
 * Its own map storage stays empty: read it through its methods (as `new Map(view)`, `[...view]`
 * and `plainMetadata` do), not by cloning it (`structuredClone` of it is an empty map).
 */
class ColumnEntries extends Map<string, StorageMetadataEntry> {
  readonly #state: ColumnState;

  constructor(state: ColumnState) {
    super();
    this.#state = state;
  }

  override get size(): number {
    return this.#state.columns.fqns.length;
  }

  override get(fqn: string): StorageMetadataEntry | undefined {
    const e = this.#state.columns.entryOf.get(fqn);
    return e === undefined ? undefined : entryAt(this.#state, e);
  }

  override has(fqn: string): boolean {
    return this.#state.columns.entryOf.has(fqn);
  }

  override set(): this {
    throw new TypeError(
      "Expected a read-only stateDictMetadata: a columnar metadata's entries do not change",
    );
  }

  override delete(): boolean {
    throw new TypeError(
      "Expected a read-only stateDictMetadata: a columnar metadata's entries do not change",
    );
  }

  override clear(): void {
    throw new TypeError(
      "Expected a read-only stateDictMetadata: a columnar metadata's entries do not change",
    );
  }

  *#entries(): Generator<[string, StorageMetadataEntry]> {
    const { fqns } = this.#state.columns;
    for (let e = 0; e < fqns.length; e++) yield [fqns[e]!, entryAt(this.#state, e)];
  }

  override entries(): MapIterator<[string, StorageMetadataEntry]> {
    return this.#entries() as MapIterator<[string, StorageMetadataEntry]>;
  }

  override *keys(): MapIterator<string> {
    yield* this.#state.columns.fqns;
  }

  override *values(): MapIterator<StorageMetadataEntry> {
    for (let e = 0; e < this.#state.columns.fqns.length; e++) yield entryAt(this.#state, e);
  }

  override forEach(
    fn: (value: StorageMetadataEntry, key: string, map: Map<string, StorageMetadataEntry>) => void,
    thisArg?: unknown,
  ): void {
    for (const [k, v] of this.#entries()) fn.call(thisArg, v, k, this);
  }

  override [Symbol.iterator](): MapIterator<[string, StorageMetadataEntry]> {
    return this.entries();
  }
}

// The view stands for a plain Map: deep equality that compares constructors (vitest's and
// Jest's `toEqual`) and code that makes "another of the same" get `Map`.
Object.defineProperty(ColumnEntries.prototype, "constructor", {
  value: Map,
  writable: true,
  configurable: true,
});

/** Entry `e`'s `stateDictMetadata` entry, built once. */
function entryAt(state: ColumnState, e: number): StorageMetadataEntry {
  let entry = state.entries[e];
  if (entry === undefined) {
    const columns = state.columns;
    const d = columns.entryDtype[e]!;
    entry =
      d === VALUE_DTYPE
        ? { type: "bytes" }
        : {
            type: "tensor",
            properties: { dtype: columns.dtypes[d]! },
            size: entrySizeOf(columns, e),
            get chunks(): ChunkStorageMetadata[] {
              return chunkList(state, e);
            },
          };
    state.entries[e] = entry;
  }
  return entry;
}

/**
 * A DCP-shaped {@link Metadata} over columns: `stateDictMetadata` is a read-only `Map` view that
 * builds an entry when one is read (a tensor's `chunks` list when that is read), `storageData` a
 * read-only view that builds a {@link StorageInfo} when one is read (each kept, so a second read
 * gives the same object), or an empty `Map` while the columns have no storage (a global plan's
 * metadata, equal to the one built from objects); `plannerData` is the columns' own map. Nothing
 * is built per entry up front.
 *
 * @param columns - the columns (not copied: they must not change).
 */
export function columnarMetadata(columns: MetadataColumns): Metadata {
  const state: ColumnState = {
    columns,
    byOffsets: [],
    indexes: [],
    infos: undefined,
    chunkLists: [],
    entries: [],
    storageData: new Map(),
  };
  const entries = new ColumnEntries(state);
  if (columns.storage) state.storageData = new ColumnStorageData(state);
  columnStates.set(entries, state);
  return {
    version: columns.version,
    stateDictMetadata: entries,
    plannerData: columns.plannerData,
    storageData: state.storageData,
    storageMeta: columns.storageMeta,
  };
}

/** Entry `e`'s chunk list, built once. */
function chunkList(state: ColumnState, e: number): ChunkStorageMetadata[] {
  let list = state.chunkLists[e];
  if (list === undefined) {
    const c = state.columns;
    const count = c.entryChunkStart[e + 1]! - c.entryChunkStart[e]!;
    list = [];
    for (let k = 0; k < count; k++) list.push(chunkAt(c, e, k));
    state.chunkLists[e] = list;
  }
  return list;
}

/**
 * How many chunks entry `e` has (0 for a value).
 * @param c - the columns.
 * @param e - the entry.
 */
export function chunkCount(c: MetadataColumns, e: number): number {
  return c.entryChunkStart[e + 1]! - c.entryChunkStart[e]!;
}

/** `count` numbers of `column` from `at`, as a new array (a loop: no typed-array view made). */
function numbersAt(column: Float64Array, at: number, count: number): number[] {
  const out = new Array<number>(count);
  for (let i = 0; i < count; i++) out[i] = column[at + i]!;
  return out;
}

/**
 * Chunk `k` of entry `e`'s offsets, as a new array.
 * @param c - the columns.
 * @param e - the entry.
 * @param k - the chunk's position in the entry.
 */
export function chunkOffsetsAt(c: MetadataColumns, e: number, k: number): number[] {
  const ndim = c.entryNdim[e]!;
  return numbersAt(c.chunkOffsets, c.entryChunkDim[e]! + k * ndim, ndim);
}

/**
 * Chunk `k` of entry `e` as DCP's `ChunkStorageMetadata` (new arrays).
 * @param c - the columns.
 * @param e - the entry.
 * @param k - the chunk's position in the entry.
 */
export function chunkAt(c: MetadataColumns, e: number, k: number): ChunkStorageMetadata {
  const ndim = c.entryNdim[e]!;
  const at = c.entryChunkDim[e]! + k * ndim;
  return { offsets: numbersAt(c.chunkOffsets, at, ndim), sizes: numbersAt(c.chunkSizes, at, ndim) };
}

/**
 * Entry `e`'s global size, as a new array.
 * @param c - the columns.
 * @param e - the entry.
 */
export function entrySizeOf(c: MetadataColumns, e: number): number[] {
  const at = c.entrySizeStart[e]!;
  return numbersAt(c.entrySize, at, c.entrySizeStart[e + 1]! - at);
}

/** Entry `e`'s chunk positions by offset key, built on first use in O(its chunks). */
function offsetLookup(state: ColumnState, e: number): Map<string, number> {
  let found = state.byOffsets[e];
  if (found === undefined) {
    found = new Map();
    const count = chunkCount(state.columns, e);
    for (let k = 0; k < count; k++) {
      const key = offsetKey(chunkOffsetsAt(state.columns, e, k));
      if (!found.has(key)) found.set(key, k);
    }
    state.byOffsets[e] = found;
  }
  return found;
}

/**
 * The position in its entry of the chunk of entry `e` at `offsets`: `hint` when that chunk's
 * offsets are these, else the first chunk's that are; undefined when none is.
 *
 * @param metadata - a columnar metadata ({@link metadataColumns} is defined).
 * @param e - the entry.
 * @param offsets - the chunk's offsets.
 * @param hint - the position to try first (a read item's `storageIndex.index`).
 */
export function chunkPositionOf(
  metadata: Metadata,
  e: number,
  offsets: readonly number[],
  hint: number | undefined,
): number | undefined {
  const state = stateOf(metadata);
  const c = state.columns;
  const ndim = c.entryNdim[e]!;
  if (offsets.length !== ndim) return undefined;
  if (hint !== undefined && Number.isInteger(hint) && hint >= 0 && hint < chunkCount(c, e)) {
    const at = c.entryChunkDim[e]! + hint * ndim;
    let same = true;
    for (let d = 0; d < ndim && same; d++) same = c.chunkOffsets[at + d] === offsets[d];
    if (same) return hint;
  }
  return offsetLookup(state, e).get(offsetKey(offsets));
}

/**
 * Record `record`'s storage entry, built on first read and kept.
 * @param metadata - a columnar metadata with storage.
 * @param record - the record.
 */
export function storageInfoOf(metadata: Metadata, record: number): StorageInfo {
  return storageInfoAt(stateOf(metadata), record);
}

function storageInfoAt(state: ColumnState, record: number): StorageInfo {
  state.infos ??= [];
  let info = state.infos[record];
  if (info === undefined) {
    info = buildStorageInfo(state.columns.storage!, record);
    state.infos[record] = info;
  }
  return info;
}

/** Hex digits of a byte. */
const HEX = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, "0"));

/**
 * Record `record`'s storage entry as a new {@link StorageInfo}.
 * @param s - the storage columns.
 * @param record - the record.
 */
export function buildStorageInfo(s: StorageColumns, record: number): StorageInfo {
  const info: { -readonly [K in keyof StorageInfo]: StorageInfo[K] } =
    s.checksum === "crc32"
      ? {
          relativePath: s.files[s.file[record]!]!,
          offset: s.offset[record]!,
          length: s.length[record]!,
          crc32: s.checksums[record]!,
        }
      : {
          relativePath: s.files[s.file[record]!]!,
          offset: s.offset[record]!,
          length: s.length[record]!,
          crc32c: s.checksums[record]!,
        };
  const itemFormat = s.itemFormats.get(record);
  if (itemFormat !== undefined) info.itemFormat = itemFormat;
  if (s.blockBytes > 0) {
    const b = blockRecordOf(s, record);
    if (b !== undefined)
      info.checksumBlocks = {
        blockBytes: s.blockBytes,
        running: Array.from(s.blockRunning.subarray(s.blockRunningStart[b]!, s.blockRunningStart[b + 1]!)),
      };
  }
  if (s.hashes) {
    const at = record * 16;
    let any = 0;
    for (let i = 0; i < 16; i++) any |= s.hashes[at + i]!;
    if (any !== 0) {
      let hex = "";
      for (let i = 0; i < 16; i++) hex += HEX[s.hashes[at + i]!];
      info.contentHash = hex;
    }
  }
  const base = s.base?.[record] ?? 0;
  if (base > 0) info.baseCheckpoint = s.bases[base - 1]!;
  return info;
}

/** The position of `record` in `blockRecords` (binary search), or undefined. */
export function blockRecordOf(s: StorageColumns, record: number): number | undefined {
  let lo = 0;
  let hi = s.blockRecords.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (s.blockRecords[mid]! < record) lo = mid + 1;
    else hi = mid;
  }
  return lo < s.blockRecords.length && s.blockRecords[lo] === record ? lo : undefined;
}

/**
 * The index of entry `e`'s chunks (a {@link BoxIndex} over the columns), built on first use in
 * O(its chunks) — one pass when the chunks come in order along the sweep dimension, as a save
 * writes them — and kept with the metadata.
 *
 * @param metadata - a columnar metadata.
 * @param e - a tensor entry.
 */
export function chunkIndexOf(metadata: Metadata, e: number): BoxIndex {
  const state = stateOf(metadata);
  let index = state.indexes[e];
  if (index === undefined) {
    const c = state.columns;
    index = new BoxIndex(
      {
        offsets: c.chunkOffsets,
        sizes: c.chunkSizes,
        first: c.entryChunkDim[e]!,
        count: chunkCount(c, e),
      },
      c.entryNdim[e]!,
    );
    state.indexes[e] = index;
  }
  return index;
}

/**
 * `metadata` with plain maps and objects in place of a columnar metadata's views — what
 * `postMessage` / `structuredClone` can copy (a view is a class instance they would flatten);
 * `metadata` itself when it is not columnar. Builds an object per chunk and stored item.
 *
 * @param metadata - any metadata.
 */
export function plainMetadata(metadata: Metadata): Metadata {
  if (!metadataColumns(metadata)) return metadata;
  const stateDictMetadata = new Map<string, StorageMetadataEntry>();
  for (const [fqn, e] of metadata.stateDictMetadata)
    stateDictMetadata.set(
      fqn,
      e.type === "tensor" ? { type: "tensor", properties: e.properties, size: e.size, chunks: e.chunks } : e,
    );
  return {
    ...metadata,
    stateDictMetadata,
    plannerData: new Map(metadata.plannerData),
    storageData: new Map(metadata.storageData),
  };
}
