// The reader's first stage: what each read item reads of its saved chunk — the stored item whole,
// or only the checksum blocks its box lies in.
import { MetadataError } from "../errors.js";
import { itemChecksum } from "../formats/checksum.js";
import type { ItemExpectation } from "../formats/item-format.js";
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
  chunkAt,
  chunkPositionOf,
  metadataColumns,
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
}

/** A tensor item's saved chunk (DCP's) and the dtype its entry records. */
export interface SavedChunk {
  readonly chunk: ChunkStorageMetadata;
  readonly dtype: DType;
}

/**
 * Decides and remembers what each read item of a load reads (planning looks at items several
 * times): {@link ReadLocator.located} for one item on its own, {@link ReadLocator.locateAll} for
 * a plan, where an item may read only part of its stored item.
 */
export class ReadLocator {
  readonly #metadata: Metadata | undefined;
  readonly #storageData: ReadonlyMap<string, StorageInfo>;
  // A Map, not a WeakMap: a load's read items all live until its reads are done, and a WeakMap of
  // as many entries costs the garbage collector more than a Map (its ephemerons are traced apart).
  // The reader drops its locator once its reads are scheduled (`FileSystemReader.readData`).
  readonly #reads = new Map<ReadItem, ItemRead>();

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
    const key = metadataIndexKey(item.storageIndex);
    const columnar = this.#columnar(item);
    if (columnar) {
      found = wholeRead(item, columnar.info, key, columnar.saved);
      this.#reads.set(item, found);
      return found;
    }
    const info = this.#storageData.get(key);
    if (!info) {
      throw new MetadataError(
        `Malformed .metadata: no storage entry for "${item.storageIndex.fqn}" at [${item.storageIndex.offset?.join(", ") ?? ""}]`,
      );
    }
    const saved = item.type === "tensor" ? savedChunkOf(this.#metadata, item) : undefined;
    found = wholeRead(item, info, key, saved);
    this.#reads.set(item, found);
    return found;
  }

  /**
   * A read item's storage entry and saved chunk from the metadata's columns (by its storage
   * index's hint, else its offsets), when the metadata is columnar and its storage data the one
   * read; undefined otherwise (then looked up in the maps, which also say what is missing).
   */
  #columnar(item: ReadItem): { info: StorageInfo; saved: SavedChunk | undefined } | undefined {
    const metadata = this.#metadata;
    if (metadata === undefined || metadata.storageData !== this.#storageData) return undefined;
    const c = metadataColumns(metadata);
    if (!c?.storage) return undefined;
    const { fqn, offset, index } = item.storageIndex;
    const e = c.entryOf.get(fqn);
    if (e === undefined) return undefined;
    const value = c.entryDtype[e] === VALUE_DTYPE;
    if (item.type === "bytes" || value) {
      if (item.type !== "bytes" || !value || offset !== null) return undefined;
      return { info: storageInfoOf(metadata, c.entryRecord[e]!), saved: undefined };
    }
    if (offset === null) return undefined;
    const k = chunkPositionOf(metadata, e, offset, index);
    if (k === undefined) return undefined;
    return {
      info: storageInfoOf(metadata, c.entryRecord[e]! + k),
      saved: { chunk: chunkAt(c, e, k), dtype: c.dtypes[c.entryDtype[e]!]! },
    };
  }

  /**
   * Decides what each of a plan's items reads: a tensor item that is the plan's only reader of its
   * saved chunk, and needs fewer of its checksum blocks (`StorageInfo.checksumBlocks`) than it has,
   * reads and verifies only those blocks — e.g. the rows of a row-wise saved chunk that a rank with
   * a finer row sharding loads. Other items, and those of `wholeChunks`, read their stored item whole.
   * @param items - the plan's items.
   * @param wholeChunks - saved chunks (by key) read whole in any case (shared with other ranks).
   */
  locateAll(items: readonly ReadItem[], wholeChunks?: { has(chunk: string): boolean }): ItemRead[] {
    const reads: ItemRead[] = [];
    // Only items of more than one checksum block can read part of theirs.
    let readers: Map<string, number> | undefined;
    for (let i = 0; i < items.length; i++) {
      const r = this.located(items[i]!);
      reads.push(r);
      if (r.info.checksumBlocks) {
        readers ??= new Map();
        readers.set(r.chunk, (readers.get(r.chunk) ?? 0) + 1);
      }
    }
    if (readers === undefined) return reads;
    const counts = readers;
    return reads.map((r) => {
      if (!r.info.checksumBlocks) return r;
      const whole = wholeRead(r.item, r.info, r.chunk, r.saved);
      const part = counts.get(r.chunk) === 1 && !wholeChunks?.has(r.chunk) ? partOf(whole) : undefined;
      const read = part ?? whole;
      this.#reads.set(r.item, read);
      return read;
    });
  }
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
