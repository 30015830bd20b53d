import type { DType } from "../model/dtype.js";
import type { Metadata, StorageInfo, WriteItem } from "../plan/metadata.js";
import type { ItemChecksum } from "./checksum.js";

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
  readonly info: Pick<StorageInfo, "crc32" | "crc32c" | "checksumBlocks" | "itemFormat">;
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
   * Stored tensor items are exactly their C-order payload, checked by their storage entry's
   * checksum alone (`itemChecksum`; written as `ITEM_CHECKSUM_ALGORITHM`): so a read may land
   * straight in the destination tensor (and be verified there), and readers and writers may
   * compute that checksum on a worker thread instead of calling `unframe` / `frame` for a large
   * tensor item in shared memory.
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
   * The `.metadata` file a checkpoint of this format carries (default: dcpjs's msgpack encoding).
   * @param metadata - the global metadata, storage entries filled in.
   */
  encodeMetadata?(metadata: Metadata): Uint8Array;
}
