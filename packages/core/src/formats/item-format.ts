import type { DType } from "../model/dtype.js";
import type { Metadata, StorageInfo, WriteItem } from "../plan/metadata.js";

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
