import type { DType } from "../model/dtype.js";
import { offsetKey } from "../model/geometry.js";
import type { ObjectPath } from "../model/state-dict.js";

/** An n-d box inside a global tensor, as DCP's `ChunkStorageMetadata`. */
export interface ChunkStorageMetadata {
  /** Where the box starts, elements per dimension. */
  readonly offsets: readonly number[];
  /** The box's size, elements per dimension. */
  readonly sizes: readonly number[];
}

/** A tensor's properties that matter for storage, as DCP's `TensorProperties` (dtype only). */
export interface TensorProperties {
  /** Element type. */
  readonly dtype: DType;
}

/** A saved tensor: its global size and the chunks it was saved as, as DCP's `TensorStorageMetadata`. */
export interface TensorStorageMetadata {
  /** Discriminant. */
  readonly type: "tensor";
  /** Element type and other properties. */
  readonly properties: TensorProperties;
  /** The global tensor's dimensions in elements. */
  readonly size: readonly number[];
  /** The saved chunks; together they cover the tensor exactly once. */
  readonly chunks: ChunkStorageMetadata[];
}

/** A saved non-tensor value, as DCP's `BytesStorageMetadata`. */
export interface BytesStorageMetadata {
  /** Discriminant. */
  readonly type: "bytes";
}

/** What `.metadata` records for one state-dict entry. */
export type StorageMetadataEntry = TensorStorageMetadata | BytesStorageMetadata;

/**
 * Names one stored item: an fqn plus, for tensors, the chunk's offsets; as DCP's `MetadataIndex`.
 *
 * `index` is a lookup hint (the chunk's position in its {@link TensorStorageMetadata.chunks}) and
 * takes no part in equality: compare with {@link metadataIndexEquals} or {@link metadataIndexKey}.
 */
export interface MetadataIndex {
  /** Fully-qualified name of the state-dict entry. */
  readonly fqn: string;
  /** The chunk's offsets for a tensor item; `null` for a bytes item. */
  readonly offset: readonly number[] | null;
  /** Lookup hint into the chunk list; ignored by equality. */
  readonly index?: number;
}

/**
 * A string that identifies a {@link MetadataIndex} by fqn and offset, ignoring the hint — the
 * key of {@link Metadata.storageData} and of every map over items.
 *
 * @param index - the index.
 */
export function metadataIndexKey(index: MetadataIndex): string {
  return index.offset === null ? `${index.fqn}\u0000` : `${index.fqn}\u0000${offsetKey(index.offset)}`;
}

/**
 * Whether two indexes name the same item (fqn and offset; the hint is ignored, as DCP).
 *
 * @param a - one index.
 * @param b - the other.
 */
export function metadataIndexEquals(a: MetadataIndex, b: MetadataIndex): boolean {
  return metadataIndexKey(a) === metadataIndexKey(b);
}

/**
 * The running checksum of an item at each block boundary — what lets a reader verify a part of
 * the item: bytes `[i·blockBytes, j·blockBytes)` (or to the item's end) are checked by computing
 * their CRC starting from `running[i − 1]` (from scratch for `i = 0`) and comparing it with
 * `running[j − 1]` (the item's own checksum at its end).
 */
export interface ChecksumBlocks {
  /** Block size (bytes), > 0. */
  readonly blockBytes: number;
  /**
   * The item's running CRC after each of its blocks but the last (whose running CRC is the item's
   * checksum): `ceil(length / blockBytes) − 1` unsigned 32-bit values.
   */
  readonly running: readonly number[];
}

/** Where one item's bytes are stored, as DCP's `_StorageInfo`, plus their checksum. */
export interface StorageInfo {
  /** Path of the data file relative to the checkpoint, e.g. `__0_0.distcp`. */
  readonly relativePath: string;
  /** Byte offset of the item in the file. */
  readonly offset: number;
  /** The item's length in bytes. */
  readonly length: number;
  /**
   * CRC-32 (IEEE, zlib's) of the item's bytes, unsigned 32-bit: what dcpjs writes. An entry has
   * this or {@link StorageInfo.crc32c}, or neither for items of formats without checksums
   * (safetensors without a sidecar, PyTorch's zip-framed items): those are checked by length and
   * their format's own checks.
   */
  readonly crc32?: number;
  /**
   * CRC-32C (Castagnoli) of the item's bytes, unsigned 32-bit: what dcpjs checkpoints of `.metadata`
   * format version 1 and safetensors checksum sidecars record.
   */
  readonly crc32c?: number;
  /**
   * The item's running checksum at each block boundary, for items longer than one block: a reader
   * that needs only some of its bytes (a few rows of a saved chunk) reads and verifies just the
   * blocks they lie in. Recorded by dcpjs for raw items (no `itemFormat`) since `.metadata`
   * format 2's `storage.blocks`; absent otherwise (the item is then read whole).
   */
  readonly checksumBlocks?: ChecksumBlocks;
  /**
   * How the item's bytes are framed — the name of an `ItemFormat`: absent (or `dcpjs`) for raw
   * bytes (dcpjs, safetensors); `torch` for a `torch.save` archive (PyTorch DCP), verified by the
   * CRC-32 of its zip members; another registered format's name.
   */
  readonly itemFormat?: string;
  /** Stream transforms applied to the item's bytes on write, undone in reverse on read (PyTorch's `stream.zstd/1`). */
  readonly transforms?: readonly string[];
  /**
   * The item's content hash — XXH3-128 of its bytes as 32 lowercase hex digits — recorded by
   * dcpjs saves so that a later incremental save can tell an unchanged item without reading it.
   * Absent where the save did not compute it.
   */
  readonly contentHash?: string;
  /**
   * For an item of an incremental checkpoint that is unchanged from its base: the name of the
   * sibling checkpoint (one path segment, e.g. `step-100`, beside this one under the same parent)
   * whose file `relativePath` holds the bytes. Absent for an item in this checkpoint's own files.
   * References are flat: they always name the checkpoint that wrote the file, never a chain.
   */
  readonly baseCheckpoint?: string;
}

/** Who saved a checkpoint and when, as DCP's `StorageMeta`. */
export interface StorageMeta {
  /** The checkpoint id (path or URI) it was saved to. */
  readonly checkpointId?: string;
  /** A unique id of the save. */
  readonly saveId?: string;
  /** A unique id of the load that read it (set at load time). */
  readonly loadId?: string;
  /** The on-disk format it was read from, when not dcpjs's own (`"safetensors"`, `"torch"`). */
  readonly format?: string;
}

/**
 * A checkpoint's metadata, the content of `.metadata`; as DCP's `Metadata`. Built once and not
 * changed: a step that adds to it (the writer's commit, the reader's load id) makes a new one.
 */
export interface Metadata {
  /** The DCP format version it follows (`"1.0.0"`). */
  readonly version: string;
  /** fqn → what was saved for it. */
  readonly stateDictMetadata: ReadonlyMap<string, StorageMetadataEntry>;
  /** fqn → its path in the nested state dict (DCP keeps the flatten mappings here). */
  readonly plannerData: ReadonlyMap<string, ObjectPath>;
  /** {@link metadataIndexKey} → where the item's bytes are. */
  readonly storageData: ReadonlyMap<string, StorageInfo>;
  /** Ids of the save. */
  readonly storageMeta: StorageMeta;
  /**
   * fqn → the stored dtype's name (e.g. `torch.qint8`) of each saved tensor whose dtype dcpjs
   * cannot hold: left out of the other maps, so a load that does not ask for it succeeds, and one
   * that does fails with `UNSUPPORTED_DTYPE` naming both. Absent when there is none.
   */
  readonly unsupportedDtypes?: ReadonlyMap<string, string>;
}

/** The kind of a {@link WriteItem}, as DCP's `WriteItemType`. */
export type WriteItemType = "tensor" | "shard" | "bytes";

/** The tensor part of a {@link WriteItem}, as DCP's `TensorWriteData`. */
export interface TensorWriteData {
  /** The chunk this item stores. */
  readonly chunk: ChunkStorageMetadata;
  /** Element type. */
  readonly properties: TensorProperties;
  /** The global tensor's dimensions in elements. */
  readonly size: readonly number[];
}

/** One item a rank plans to write, as DCP's `WriteItem`. */
export type WriteItem = TensorWriteItem | BytesWriteItem;

/** A tensor, or one shard of a sharded tensor, to write: {@link WriteItem} with its tensor data. */
export interface TensorWriteItem {
  /** Which item (fqn + chunk offsets). */
  readonly index: MetadataIndex;
  /** A whole tensor, or a shard of a sharded tensor. */
  readonly type: "tensor" | "shard";
  /** Its dtype, global shape and chunk. */
  readonly tensorData: TensorWriteData;
}

/** A non-tensor value to write (msgpack bytes): {@link WriteItem} without tensor data. */
export interface BytesWriteItem {
  /** Which item (fqn, offset `null`). */
  readonly index: MetadataIndex;
  readonly type: "bytes";
  readonly tensorData?: undefined;
}

/** The kind of a {@link ReadItem}, as DCP's `LoadItemType`. */
export type LoadItemType = "tensor" | "bytes";

/**
 * One copy a rank plans to make while loading, as DCP's `ReadItem`: a tensor box
 * ({@link TensorReadItem}) or a whole value ({@link BytesReadItem}).
 */
export type ReadItem = TensorReadItem | BytesReadItem;

/**
 * An n-d box from a saved chunk into a local chunk. Offsets are relative to each chunk; `lengths`
 * is the box's size.
 */
export interface TensorReadItem {
  readonly type: "tensor";
  /** The local chunk it lands in (fqn + local chunk offsets, hint = local chunk position). */
  readonly destIndex: MetadataIndex;
  /** Box start inside the local chunk, elements per dimension. */
  readonly destOffsets: readonly number[];
  /** The saved chunk it comes from (fqn + saved chunk offsets, hint = saved chunk position). */
  readonly storageIndex: MetadataIndex;
  /** Box start inside the saved chunk, elements per dimension. */
  readonly storageOffsets: readonly number[];
  /** Box size, elements per dimension. */
  readonly lengths: readonly number[];
}

/** A non-tensor value read whole (offsets `null` in both indexes). */
export interface BytesReadItem {
  readonly type: "bytes";
  /** Where it lands (fqn). */
  readonly destIndex: MetadataIndex;
  /** Where it was saved (fqn). */
  readonly storageIndex: MetadataIndex;
}

/** Storage data a {@link SavePlan} carries from the global plan: the data-file name prefix. */
export interface StoragePrefix {
  /** Prefix of this rank's data files, e.g. `__3_` or `1100000000/epoch_4/__3_`. */
  readonly prefix: string;
}

/** What one rank will write, as DCP's `SavePlan`. */
export interface SavePlan {
  /** The items, in order. */
  readonly items: WriteItem[];
  /** Storage-specific data (the file prefix after the global plan). */
  readonly storageData?: StoragePrefix;
  /** Planner-specific data (the flatten mappings on local plans). */
  readonly plannerData?: Array<[string, ObjectPath]>;
}

/** What one rank will read, as DCP's `LoadPlan`. */
export interface LoadPlan {
  /** The items, in order. */
  readonly items: ReadItem[];
  /** Storage-specific data. */
  readonly storageData?: unknown;
  /** Planner-specific data. */
  readonly plannerData?: unknown;
}

/** The outcome of writing one item, as DCP's `WriteResult`. */
export interface WriteResult {
  /** The item written. */
  readonly index: MetadataIndex;
  /** Bytes written. */
  readonly sizeInBytes: number;
  /** Where they are. */
  readonly storageData: StorageInfo;
}
