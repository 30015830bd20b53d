import { crc32c } from "@node-rs/crc32";
import { ChecksumMismatchError } from "../errors.js";
import type { ItemFormat } from "./item-format.js";

/**
 * dcpjs's own item framing: an item is its raw bytes (a tensor chunk's C-order little-endian
 * bytes, a value's codec bytes); the CRC-32C of those bytes lives in the metadata's storage entry.
 */
export const NATIVE_ITEM_FORMAT: ItemFormat = {
  name: "dcpjs",
  zeroCopy: true,
  frame: (_item, payload) => ({ parts: [payload], info: { crc32c: crc32c(payload) } }),
  unframe(stored, info, _expect, fqn, where) {
    const actual = info.crc32c === undefined ? undefined : crc32c(stored);
    if (actual !== info.crc32c) throw new ChecksumMismatchError(fqn, info.crc32c!, actual!, where);
    return stored;
  },
};
