// The reader's first stage: what each read item reads of its saved chunk — the stored item whole,
// or only the checksum blocks its box lies in.
import { MetadataError } from "../errors.js";
import { type ChecksumAlgorithm, itemChecksum } from "../formats/checksum.js";
import type { ItemExpectation, ItemFormat } from "../formats/item-format.js";
import { itemFormatOf } from "../formats/item-formats.js";
import { DTYPE_BYTES, type DType } from "../model/dtype.js";
import { boxSpan, findChunk } from "../model/geometry.js";
import {
  type ChunkStorageMetadata,
  type Metadata,
  metadataIndexKey,
  type ReadItem,
  type StorageInfo,
} from "../plan/metadata.js";
import {
  blockRecordOf,
  chunkAt,
  chunkPositionOf,
  type MetadataColumns,
  metadataColumns,
  type StorageColumns,
  storageInfoOf,
  VALUE_DTYPE,
} from "../plan/metadata-columns.js";
import { dataFileOf } from "./reference-paths.js";

/**
 * A read item and what it reads of its saved chunk: its storage entry, and the bytes
 * `[start, end)` of the stored item — all of it, or (`first` > 0 or `end` < length) only the
 * checksum blocks the item's box lies in — at `offset` in `relativePath` (the scheduler's
 * `ItemLocation`). `key` names what is read: items with one key are served by one read. Built
 * once per item; the schedule carries it, so nothing is looked up twice.
 */
export interface ItemRead {
  /** The read item. */
  readonly item: ReadItem;
  /** Its saved chunk's storage entry. */
  readonly info: StorageInfo;
  /** For a tensor item: its saved chunk and the entry's dtype. */
  readonly saved: SavedChunk | undefined;
  /** The saved chunk's key (`metadataIndexKey`). */
  readonly chunk: string;
  /** What is read: the chunk's key, or for a part, the chunk's key and the part's start. */
  readonly key: string;
  /** First byte read of the stored item. */
  readonly start: number;
  /** End (exclusive) of the bytes read of the stored item. */
  readonly end: number;
  /** The first checksum block read (`start / blockBytes`). */
  readonly first: number;
  /**
   * The data file, relative to the checkpoint read (`../{base}/{file}` for an item that references
   * a sibling checkpoint's file: {@link dataFileOf}), and the file range read: `info.offset + start`,
   * `end − start` bytes.
   */
  readonly relativePath: string;
  /** The file offset read from (bytes). */
  readonly offset: number;
  /** Bytes read. */
  readonly length: number;
  /** The stored item's format (`itemFormatOf(info)`). */
  readonly format: ItemFormat;
  /** For a tensor item: the dtype its entry records (`saved.dtype`, without building `saved`). */
  readonly dtype: DType | undefined;
  /** Whether its entry records running checksums (`info.checksumBlocks`). */
  readonly blocked: boolean;
  /** The checksum its entry records (`itemChecksum(info)`), as its algorithm and value; undefined for none. */
  readonly crcAlgorithm: ChecksumAlgorithm | undefined;
  /** See {@link ItemRead.crcAlgorithm}. */
  readonly crc: number | undefined;
}

/** A tensor item's saved chunk (DCP's) and the dtype its entry records. */
export interface SavedChunk {
  readonly chunk: ChunkStorageMetadata;
  readonly dtype: DType;
}

/**
 * Decides and remembers what each read item of a load reads (planning looks at items several
 * times): {@link ReadLocator.located} for one item on its own, {@link ReadLocator.locateAll} for
 * a plan, where an item may read only part of its stored item. A columnar metadata's items are
 * located from its columns ({@link ColumnRead}: one object per item, its storage entry, saved
 * chunk and key built only when asked for).
 */
export class ReadLocator {
  readonly #metadata: Metadata | undefined;
  readonly #storageData: ReadonlyMap<string, StorageInfo>;
  // A Map, not a WeakMap: a load's read items all live until its reads are done, and a WeakMap of
  // as many entries costs the garbage collector more than a Map (its ephemerons are traced apart).
  // Only items located one by one are kept here; a plan's are kept as one array by its items.
  // The reader drops its locator once its reads are scheduled (`FileSystemReader.readData`).
  readonly #reads = new Map<ReadItem, ItemRead>();
  /** The last plan located without `wholeChunks`: its items and their reads, by item number. */
  #plan: { readonly items: readonly ReadItem[]; readonly reads: ItemRead[] } | undefined;

  /**
   * @param storageData - the storage entries by `metadataIndexKey`.
   * @param metadata - the checkpoint's metadata (the saved chunks of tensor items).
   */
  constructor(storageData: ReadonlyMap<string, StorageInfo>, metadata: Metadata | undefined) {
    this.#storageData = storageData;
    this.#metadata = metadata;
  }

  /**
   * What a read item reads: from the metadata the first time (the whole stored item, unless
   * {@link ReadLocator.locateAll} chose part of it), then from a cache.
   * @throws {@link MetadataError} when the metadata has no storage entry or no saved chunk for it.
   */
  located(item: ReadItem): ItemRead {
    let found = this.#reads.get(item);
    if (found) return found;
    found = this.#locate(item, metadataColumns(this.#columnMetadata));
    this.#reads.set(item, found);
    return found;
  }

  /** The metadata when its columns are the storage data read, else undefined (look up the maps). */
  get #columnMetadata(): Metadata | undefined {
    const metadata = this.#metadata;
    return metadata !== undefined && metadata.storageData === this.#storageData ? metadata : undefined;
  }

  /** An item's whole read, from the columns `c` where they have it, else from the maps. */
  #locate(item: ReadItem, c: MetadataColumns | undefined): ItemRead {
    const columnar = c?.storage ? columnRead(this.#metadata!, c, item) : undefined;
    if (columnar) return columnar;
    const key = metadataIndexKey(item.storageIndex);
    const info = this.#storageData.get(key);
    if (!info) {
      throw new MetadataError(
        `Malformed .metadata: no storage entry for "${item.storageIndex.fqn}" at [${item.storageIndex.offset?.join(", ") ?? ""}]`,
      );
    }
    const saved = item.type === "tensor" ? savedChunkOf(this.#metadata, item) : undefined;
    return wholeRead(item, info, key, saved);
  }

  /**
   * Decides what each of a plan's items reads: a tensor item that is the plan's only reader of its
   * saved chunk, and needs fewer of its checksum blocks (`StorageInfo.checksumBlocks`) than it has,
   * reads and verifies only those blocks — e.g. the rows of a row-wise saved chunk that a rank with
   * a finer row sharding loads. Other items, and those of `wholeChunks`, read their stored item whole.
   * Without `wholeChunks`, the reads are kept for the same `items` asked again (the coordinator's
   * plan, then the rank's reads).
   * @param items - the plan's items.
   * @param wholeChunks - saved chunks (by key) read whole in any case (shared with other ranks).
   * @returns each item's read, by item number.
   */
  locateAll(items: readonly ReadItem[], wholeChunks?: { has(chunk: string): boolean }): ItemRead[] {
    const kept = this.#plan;
    if (wholeChunks === undefined && kept?.items === items && sameItems(kept.reads, items)) return kept.reads;
    const reads: ItemRead[] = new Array(items.length);
    const c = metadataColumns(this.#columnMetadata);
    // Only items of more than one checksum block can read part of theirs.
    let readers: Map<string, number> | undefined;
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!;
      const r = this.#reads.get(item) ?? this.#locate(item, c);
      reads[i] = r;
      if (r.blocked) {
        readers ??= new Map();
        readers.set(r.chunk, (readers.get(r.chunk) ?? 0) + 1);
      }
    }
    if (readers !== undefined) {
      const counts = readers;
      for (let i = 0; i < reads.length; i++) {
        const r = reads[i]!;
        if (!r.blocked) continue;
        const whole = wholeRead(r.item, r.info, r.chunk, r.saved);
        const part = counts.get(r.chunk) === 1 && !wholeChunks?.has(r.chunk) ? partOf(whole) : undefined;
        reads[i] = part ?? whole;
        this.#reads.set(r.item, reads[i]!);
      }
    }
    if (wholeChunks === undefined) this.#plan = { items, reads };
    return reads;
  }
}

/** Whether `reads` are still those of `items`, item by item (a plan's array may have been changed in place). */
function sameItems(reads: readonly ItemRead[], items: readonly ReadItem[]): boolean {
  if (reads.length !== items.length) return false;
  for (let i = 0; i < items.length; i++) if (reads[i]!.item !== items[i]) return false;
  return true;
}

/**
 * A read item's whole read from a columnar metadata's columns (by its storage index's hint, else
 * its offsets); undefined when the columns have no such stored item (then looked up in the maps,
 * which also say what is missing) or it references another checkpoint's file.
 */
function columnRead(metadata: Metadata, c: MetadataColumns, item: ReadItem): ItemRead | undefined {
  const s = c.storage!;
  const { fqn, offset, index } = item.storageIndex;
  const e = c.entryOf.get(fqn);
  if (e === undefined) return undefined;
  const value = c.entryDtype[e] === VALUE_DTYPE;
  if (item.type === "bytes" || value) {
    if (item.type !== "bytes" || !value || offset !== null) return undefined;
    return new ColumnRead(metadata, c, s, item, e, -1);
  }
  if (offset === null) return undefined;
  const k = chunkPositionOf(metadata, e, offset, index);
  if (k === undefined) return undefined;
  return new ColumnRead(metadata, c, s, item, e, k);
}

/**
 * An item's whole read from the columns of a columnar metadata: its file range, format and
 * checksum read from the columns once; its storage entry, saved chunk (new arrays) and key
 * built when first asked for — a load of 100,000 small items asks for none of them.
 */
class ColumnRead implements ItemRead {
  readonly item: ReadItem;
  readonly relativePath: string;
  readonly offset: number;
  readonly length: number;
  readonly format: ItemFormat;
  readonly dtype: DType | undefined;
  readonly blocked: boolean;
  readonly crcAlgorithm: ChecksumAlgorithm;
  readonly crc: number;
  readonly #metadata: Metadata;
  readonly #columns: MetadataColumns;
  readonly #record: number;
  readonly #entry: number;
  /** The chunk's position in its entry; −1 for a value. */
  readonly #k: number;
  #saved: SavedChunk | undefined;
  #chunk: string | undefined;

  constructor(
    metadata: Metadata,
    c: MetadataColumns,
    s: StorageColumns,
    item: ReadItem,
    e: number,
    k: number,
  ) {
    const record = c.entryRecord[e]! + Math.max(k, 0);
    this.item = item;
    this.#metadata = metadata;
    this.#columns = c;
    this.#record = record;
    this.#entry = e;
    this.#k = k;
    this.offset = s.offset[record]!;
    this.length = s.length[record]!;
    const referenced = (s.base?.[record] ?? 0) > 0;
    const special = referenced || s.itemFormats.has(record);
    const info = special ? storageInfoOf(metadata, record) : undefined;
    this.relativePath = referenced ? dataFileOf(info!) : s.files[s.file[record]!]!;
    this.format = itemFormatOf(info ?? UNNAMED_FORMAT);
    this.dtype = k < 0 ? undefined : c.dtypes[c.entryDtype[e]!];
    this.blocked = s.blockBytes > 0 && blockRecordOf(s, record) !== undefined;
    this.crcAlgorithm = s.checksum;
    this.crc = s.checksums[record]!;
  }

  get start(): number {
    return 0;
  }

  get end(): number {
    return this.length;
  }

  get first(): number {
    return 0;
  }

  get info(): StorageInfo {
    return storageInfoOf(this.#metadata, this.#record);
  }

  get saved(): SavedChunk | undefined {
    if (this.#k < 0) return undefined;
    this.#saved ??= { chunk: chunkAt(this.#columns, this.#entry, this.#k), dtype: this.dtype! };
    return this.#saved;
  }

  get chunk(): string {
    this.#chunk ??= metadataIndexKey(this.item.storageIndex);
    return this.#chunk;
  }

  get key(): string {
    return this.chunk;
  }

  /** Whether a tensor item's box is its saved chunk whole (no offset into it, its sizes). */
  wholeBox(): boolean {
    const { item } = this;
    if (item.type !== "tensor" || this.#k < 0) return false;
    const c = this.#columns;
    const ndim = c.entryNdim[this.#entry]!;
    const at = c.entryChunkDim[this.#entry]! + this.#k * ndim;
    if (item.lengths.length !== ndim) return false;
    for (let d = 0; d < ndim; d++)
      if (item.lengths[d] !== c.chunkSizes[at + d] || item.storageOffsets[d] !== 0) return false;
    return true;
  }
}

/** A storage entry that names no item format: its format is dcpjs's own (as registered now). */
const UNNAMED_FORMAT: StorageInfo = { relativePath: "", offset: 0, length: 0 };

/**
 * Whether a tensor read item's box is its saved chunk whole: no offset into the chunk, and the
 * chunk's sizes (read from the metadata's columns where the read came from them).
 * @param read - the item's read.
 */
export function readsWholeBox(read: ItemRead): boolean {
  if (read instanceof ColumnRead) return read.wholeBox();
  const { item, saved } = read;
  if (item.type !== "tensor" || !saved) return false;
  const sizes = saved.chunk.sizes;
  if (item.lengths.length !== sizes.length) return false;
  for (let d = 0; d < sizes.length; d++)
    if (item.lengths[d] !== sizes[d] || item.storageOffsets[d] !== 0) return false;
  return true;
}

/**
 * An item's read of its whole stored item.
 * @param item - the read item.
 * @param info - its storage entry.
 * @param chunk - its saved chunk's key.
 * @param saved - its saved chunk, for a tensor item.
 */
export function wholeRead(
  item: ReadItem,
  info: StorageInfo,
  chunk: string,
  saved: SavedChunk | undefined,
): ItemRead {
  const sum = itemChecksum(info);
  return {
    item,
    info,
    saved,
    chunk,
    key: chunk,
    start: 0,
    end: info.length,
    first: 0,
    relativePath: dataFileOf(info),
    offset: info.offset,
    length: info.length,
    format: itemFormatOf(info),
    dtype: saved?.dtype,
    blocked: info.checksumBlocks !== undefined,
    crcAlgorithm: sum?.algorithm,
    crc: sum?.value,
  };
}

/**
 * The read of only the checksum blocks of its stored item that a tensor item's box lies in, when
 * they are fewer than all; undefined otherwise (read it whole) — and for items of a format whose
 * stored bytes are not the payload as it is (not `zeroCopy`) or without a checksum.
 * @param whole - the item's whole read ({@link wholeRead}).
 */
export function partOf(whole: ItemRead): ItemRead | undefined {
  const { item, info, saved } = whole;
  const blocks = info.checksumBlocks;
  if (!blocks || item.type !== "tensor" || !saved || !itemChecksum(info) || !itemFormatOf(info).zeroCopy)
    return undefined;
  const span = boxSpan(saved.chunk.sizes, item.storageOffsets, item.lengths);
  if (!span) return undefined;
  const elementBytes = DTYPE_BYTES[saved.dtype];
  const first = Math.floor((span.start * elementBytes) / blocks.blockBytes);
  const start = first * blocks.blockBytes;
  const end = Math.min(
    Math.ceil((span.end * elementBytes) / blocks.blockBytes) * blocks.blockBytes,
    info.length,
  );
  if (end - start >= info.length) return undefined;
  return {
    ...whole,
    key: `${whole.chunk}#${start}`,
    start,
    end,
    first,
    offset: info.offset + start,
    length: end - start,
  };
}

/**
 * Where a read lies, for a message: `file @ offset+length`, and the whole item's range for a part of it.
 * @param relativePath - the data file.
 * @param read - the item's read.
 */
export function whereRead(relativePath: string, { info, start, end }: ItemRead): string {
  return end - start < info.length
    ? `${relativePath} @ ${info.offset + start}+${end - start} (of the item @ ${info.offset}+${info.length})`
    : `${relativePath} @ ${info.offset}+${info.length}`;
}

/**
 * What a read item's stored payload must be: a value, or a tensor chunk of the metadata's dtype and shape.
 * @param read - the item's read.
 */
export function expectation({ item, saved }: ItemRead): ItemExpectation {
  if (item.type === "bytes" || !saved) return { kind: "value" };
  return { kind: "tensor", dtype: saved.dtype, sizes: saved.chunk.sizes };
}

/**
 * A tensor read item's saved chunk and dtype, from the metadata.
 * @param metadata - the checkpoint's metadata.
 * @param item - a tensor read item.
 * @throws {@link MetadataError} when the metadata has no such chunk.
 */
export function savedChunkOf(metadata: Metadata | undefined, item: ReadItem): SavedChunk {
  const entry = metadata?.stateDictMetadata.get(item.storageIndex.fqn);
  const offsets = item.storageIndex.offset ?? [];
  const chunk =
    entry?.type === "tensor" ? findChunk(entry.chunks, offsets, item.storageIndex.index) : undefined;
  if (!chunk || entry?.type !== "tensor") {
    throw new MetadataError(
      `Malformed .metadata: no chunk of "${item.storageIndex.fqn}" at [${offsets.join(", ")}]`,
    );
  }
  return { chunk, dtype: entry.properties.dtype };
}
