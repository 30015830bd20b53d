import type { DType } from "../model/dtype.js";
import type { Metadata, StorageInfo, WriteItem } from "../plan/metadata.js";
import type { ChecksumAlgorithm, ItemChecksum } from "./checksum.js";
import type { ItemSums } from "./item-sums.js";

/** What a read item expects to find in its stored bytes. */
export type ItemExpectation =
  | {
      readonly kind: "tensor";
      /** The entry's dtype, from the metadata. */
      readonly dtype: DType;
      /** The saved chunk's shape. */
      readonly sizes: readonly number[];
    }
  | { readonly kind: "value" };

/** An item framed for writing: the bytes to write, in order, and what its storage entry records. */
export interface FramedItem {
  /** Written back to back; a part may be the payload itself (not copied: large tensors stream). */
  readonly parts: readonly Uint8Array[];
  /** Besides the file, offset and length: the checksum (with its running values per block, if any) and format name its storage entry keeps. */
  readonly info: Pick<StorageInfo, "crc32" | "crc32c" | "checksumBlocks" | "itemFormat" | "contentHash">;
}

/** Where a framed tensor item's payload lies in its stored bytes ({@link PayloadFrame.locate}). */
export interface PayloadLocation {
  /** The payload's first byte in the stored item. */
  readonly offset: number;
  /** The checksum the frame records over exactly the payload. */
  readonly checksum: ItemChecksum;
  /** What records it, for messages (e.g. `zip member archive/data/0`). */
  readonly what: string;
}

/**
 * Where an item format may compute checksums off the calling thread: handed in by the reader (its
 * worker pool), so that formats never reach into storage.
 */
export interface ChecksumOffload {
  /**
   * Whether a check of `bytes` over these buffers runs on a worker thread (large enough, and every
   * buffer in shared memory).
   * @param bytes - the check's size (bytes).
   * @param buffers - the memory it reads.
   */
  runsOffThread(bytes: number, ...buffers: Uint8Array[]): boolean;
  /**
   * The running checksums of `bytes` at each block end, on a worker thread.
   * @param algorithm - which CRC.
   * @param bytes - in shared memory.
   * @param blockBytes - block size (bytes); `Infinity` for one block.
   * @param previous - the running checksum before these bytes; absent: from scratch.
   */
  runningChecksums(
    algorithm: ChecksumAlgorithm,
    bytes: Uint8Array,
    blockBytes: number,
    previous?: number,
  ): Promise<number[]>;
  /**
   * Optional (a writer's pool has it): the running checksums of `bytes` at each block end and
   * their content hash (`StorageInfo.contentHash`), by one worker task.
   * @param algorithm - which CRC.
   * @param bytes - in shared memory.
   * @param blockBytes - block size (bytes); `Infinity` for one block.
   */
  checksumsAndHash?(
    algorithm: ChecksumAlgorithm,
    bytes: Uint8Array,
    blockBytes: number,
  ): Promise<{ readonly running: number[]; readonly contentHash: string }>;
  /**
   * Optional (a writer's pool has it): the CRC and content hash of each of several items laid end
   * to end in `bytes`, by one worker task (`itemSums`).
   * @param algorithm - which CRC.
   * @param bytes - the items, end to end, in shared memory.
   * @param ends - each item's end (bytes from `bytes[0]`), ascending.
   */
  itemSums?(algorithm: ChecksumAlgorithm, bytes: Uint8Array, ends: Uint32Array): Promise<ItemSums>;
  /**
   * Each part's checksum, computed by one worker task (one round trip for all).
   * @param algorithm - which CRC.
   * @param parts - each in shared memory.
   */
  checksums(algorithm: ChecksumAlgorithm, parts: readonly Uint8Array[]): Promise<number[]>;
}

/** A stored item read — whole, or the checksum blocks of it from `first` on — to verify. */
export interface StoredRead {
  /** The bytes read. */
  readonly stored: Uint8Array;
  /** The item's storage entry. */
  readonly info: StorageInfo;
  /** What the read item expects. */
  readonly expect: ItemExpectation;
  /** The checksum block `stored` starts at (0: the item's start; > 0 only for `zeroCopy` formats). */
  readonly first: number;
  /** For messages. */
  readonly fqn: string;
  /** `file @ offset+length`, for messages (built only for one). */
  readonly where: () => string;
}

/**
 * For a format whose stored tensor items hold the tensor's C-order bytes as they are inside a
 * frame (PyTorch's STORED zip): lets a reader read an item's frame first, then its payload straight
 * into the destination tensor — no staging copy — and check the payload there against the
 * checksum the frame records.
 */
export interface PayloadFrame {
  /** Smallest payload read this way (bytes); smaller items are read whole and unframed. */
  readonly minBytes: number;
  /**
   * Where the payload lies, from the item's first and last `length − payload` bytes (which hold
   * the whole frame); undefined when it is not exactly the tensor's C-order bytes in one place or
   * the frame is not well-formed — the item is then read whole and {@link ItemFormat.unframe}d,
   * which reports any damage.
   * @param head - the stored item's first bytes.
   * @param tail - its last bytes.
   * @param info - its storage entry.
   * @param expect - the tensor the read item expects.
   * @param fqn - for messages.
   * @param where - `file @ offset+length`, for messages.
   */
  locate(
    head: Uint8Array,
    tail: Uint8Array,
    info: StorageInfo,
    expect: Extract<ItemExpectation, { kind: "tensor" }>,
    fqn: string,
    where: string,
  ): PayloadLocation | undefined;
}

/**
 * How an item's bytes are framed in a data file, used by the writer (frame) and the reader
 * (locate and verify): dcpjs's raw little-endian bytes with a CRC-32 in the metadata, or
 * PyTorch's `torch.save` archive per item. A format is added by implementing this and calling
 * `registerItemFormat`; the scheduler and the backends never see it.
 */
export interface ItemFormat {
  /** Its name: `FileSystemWriter`'s `format` option and `StorageInfo.itemFormat` (dcpjs's own: `dcpjs`). */
  readonly name: string;
  /**
   * Stored tensor items are exactly their C-order payload: the scheduler's hint that a read may
   * land straight in the destination tensor, or read only some checksum blocks of an item (the
   * format's {@link ItemFormat.verify} then checks it there).
   */
  readonly zeroCopy: boolean;
  /** Set where tensor items are framed around their payload as it is: see {@link PayloadFrame}. */
  readonly payloadFrame?: PayloadFrame;
  /**
   * Frames one item for writing.
   * @param item - the write item.
   * @param payload - its bytes: a tensor chunk's C-order bytes, or a value's codec bytes.
   */
  frame(item: WriteItem, payload: Uint8Array): FramedItem;
  /**
   * Frames one item whose checksum a worker thread computes while it is written (a large tensor in
   * shared memory, in a format that stores it as it is); undefined where the format would not —
   * the writer then calls {@link ItemFormat.frame}.
   * @param item - the write item.
   * @param payload - its bytes.
   * @param offload - the writer's worker threads.
   * @returns the parts to write, and what the storage entry records once the worker is done.
   */
  frameOnWorker?(
    item: WriteItem,
    payload: Uint8Array,
    offload: ChecksumOffload,
  ): { readonly parts: readonly Uint8Array[]; readonly info: Promise<FramedItem["info"]> } | undefined;
  /**
   * The payload of a stored item — a tensor chunk's C-order bytes, or a value's codec bytes —
   * after checking it (its CRC, or the format's own checks).
   * @param stored - the item's stored bytes (its `length` at its `offset`).
   * @param info - its storage entry.
   * @param expect - what the read item expects.
   * @param fqn - for messages.
   * @param where - `file @ offset+length`, for messages.
   * @throws `ChecksumMismatchError` for damaged bytes; {@link MetadataError} for a malformed frame.
   */
  unframe(
    stored: Uint8Array,
    info: StorageInfo,
    expect: ItemExpectation,
    fqn: string,
    where: string,
  ): Uint8Array;
  /**
   * Checks a stored read and returns its payload, as {@link ItemFormat.unframe} (which a format
   * without it is read by) — perhaps on a worker thread through `offload`, the promise then
   * rejecting on damage. A `zeroCopy` format verifies partial reads (`first` > 0) here.
   * @param read - what was read.
   * @param offload - the reader's worker threads.
   * @throws `ChecksumMismatchError` for damaged bytes; {@link MetadataError} for a malformed frame.
   */
  verify?(read: StoredRead, offload: ChecksumOffload): Uint8Array | Promise<Uint8Array>;
  /**
   * Checks the stored items of one read run (several items read with one call) together — e.g.
   * their CRCs by one worker task — and returns their payloads; undefined where it would not (they
   * are then checked one by one).
   * @param reads - the run's items, each read whole.
   * @param offload - the reader's worker threads.
   * @param runBytes - the run's bytes, gaps included.
   * @throws `ChecksumMismatchError` (the promise rejects) naming the first damaged item.
   */
  verifyRun?(
    reads: readonly StoredRead[],
    offload: ChecksumOffload,
    runBytes: number,
  ): Promise<Uint8Array[]> | undefined;
  /**
   * The `.metadata` file a checkpoint of this format carries (default: dcpjs's msgpack encoding).
   * @param metadata - the global metadata, storage entries filled in.
   */
  encodeMetadata?(metadata: Metadata): Uint8Array;
}
