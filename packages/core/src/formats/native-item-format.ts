import { ChecksumMismatchError } from "../errors.js";
import {
  checksumFields,
  checksumName,
  computeChecksum,
  ITEM_CHECKSUM_ALGORITHM,
  itemChecksum,
} from "./checksum.js";
import type { ItemFormat } from "./item-format.js";

/**
 * dcpjs's own item framing: an item is its raw bytes (a tensor chunk's C-order little-endian
 * bytes, a value's codec bytes); the CRC-32 of those bytes lives in the metadata's storage entry
 * (the CRC-32C for checkpoints written before `.metadata` format version 2, still verified).
 */
export const NATIVE_ITEM_FORMAT: ItemFormat = {
  name: "dcpjs",
  zeroCopy: true,
  frame: (_item, payload) => ({
    parts: [payload],
    info: checksumFields(ITEM_CHECKSUM_ALGORITHM, computeChecksum(ITEM_CHECKSUM_ALGORITHM, payload)),
  }),
  unframe(stored, info, _expect, fqn, where) {
    const sum = itemChecksum(info);
    if (sum === undefined) return stored;
    const actual = computeChecksum(sum.algorithm, stored);
    if (actual !== sum.value)
      throw new ChecksumMismatchError(fqn, sum.value, actual, where, checksumName(sum.algorithm));
    return stored;
  },
};
