import {
  assertItemBlocks,
  blockChecksumFields,
  CHECKSUM_BLOCK_BYTES,
  checksumFields,
  computeChecksum,
  ITEM_CHECKSUM_ALGORITHM,
  itemChecksum,
  runningChecksums,
} from "./checksum.js";
import { contentHashOf } from "./content-hash.js";
import type { FramedItem, ItemFormat } from "./item-format.js";
import { frameNativeOnWorker, verifyNativeItem, verifyNativeRun } from "./native-item-verify.js";

/**
 * dcpjs's own item framing: an item is its raw bytes (a tensor chunk's C-order little-endian
 * bytes, a value's codec bytes); the CRC-32 of those bytes lives in the metadata's storage entry
 * (the CRC-32C for checkpoints written before `.metadata` format version 2, still verified) —
 * for a tensor item of more than {@link CHECKSUM_BLOCK_BYTES}, with its running CRC-32 at each
 * block boundary (`checksumBlocks`), so that a reader can verify the blocks it reads of it alone
 * ({@link verifyNativeItem}: on a worker thread where large; small items of a run together), and
 * large tensor items are checksummed on a worker thread while written ({@link frameNativeOnWorker}).
 * Each item's content hash (`StorageInfo.contentHash`, XXH3-128) is computed with its checksum,
 * once the writer has loaded the hasher (`loadContentHasher`). `FileSystemWriter` computes the
 * same fields for a batch of small items at once (`itemSums`, on a worker thread) rather than
 * calling `frame` per item.
 */
export const NATIVE_ITEM_FORMAT: ItemFormat = {
  name: "dcpjs",
  zeroCopy: true,
  frame: (item, payload) => {
    const sums: FramedItem["info"] =
      item.type === "bytes" || payload.byteLength <= CHECKSUM_BLOCK_BYTES
        ? checksumFields(ITEM_CHECKSUM_ALGORITHM, computeChecksum(ITEM_CHECKSUM_ALGORITHM, payload))
        : blockChecksumFields(
            ITEM_CHECKSUM_ALGORITHM,
            runningChecksums(ITEM_CHECKSUM_ALGORITHM, payload, CHECKSUM_BLOCK_BYTES),
            CHECKSUM_BLOCK_BYTES,
          );
    const contentHash = contentHashOf(payload);
    return { parts: [payload], info: contentHash === undefined ? sums : { ...sums, contentHash } };
  },
  frameOnWorker: frameNativeOnWorker,
  unframe(stored, info, _expect, fqn, where) {
    const sum = itemChecksum(info);
    if (sum === undefined) return stored;
    assertItemBlocks(sum, info.checksumBlocks, 0, stored, fqn, where);
    return stored;
  },
  verify: verifyNativeItem,
  verifyRun: verifyNativeRun,
};
