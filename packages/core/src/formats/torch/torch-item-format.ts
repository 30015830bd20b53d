import { MetadataError } from "../../errors.js";
import { DecodeBudget } from "../../model/decode-budget.js";
import { DTYPE_BYTES } from "../../model/dtype.js";
import { numel, sameShape } from "../../model/geometry.js";
import { decodeValue, encodeValue } from "../../model/value-codec.js";
import type { ItemFormat } from "../item-format.js";
import { decodeTorchItem, locateTorchPayload, unzstd } from "./torch-item.js";
import { assertTorchDtype, torchTensorArchive, torchValueArchive } from "./torch-write.js";

/**
 * Smallest torch tensor item read straight into its destination (its frame first, then its
 * payload in place): 256 KiB. Smaller ones are read whole (one request) and decoded.
 */
export const TORCH_IN_PLACE_MIN_BYTES = 256 * 1024;

/**
 * PyTorch DCP's item framing: each item a `torch.save` archive (a STORED zip) — a tensor chunk
 * around its bytes (streamed, not copied), a value as the archive of its pickle — perhaps through
 * `stream.zstd/1`; verified on read by the zip members' CRC-32s; `.metadata` as PyTorch's pickle.
 * A large tensor item that is not zstd-framed is read straight into its destination where its
 * payload is the tensor's C-order bytes ({@link ItemFormat.payloadFrame}), and checked there
 * against its member's CRC-32.
 */
export const TORCH_ITEM_FORMAT: ItemFormat = {
  name: "torch",
  zeroCopy: false,
  // A tensor's bytes are one STORED zip member, checked by its CRC-32: large ones are read in place.
  payloadFrame: {
    minBytes: TORCH_IN_PLACE_MIN_BYTES,
    locate(head, tail, info, expect, fqn, where) {
      if (info.transforms?.length) return undefined;
      const at = locateTorchPayload(head, tail, info.length, expect.dtype, expect.sizes, fqn, where);
      return (
        at && {
          offset: at.offset,
          checksum: { algorithm: "crc32", value: at.crc32 },
          what: `zip member ${at.member}`,
        }
      );
    },
  },
  frame(item, payload) {
    if (item.type === "bytes")
      return {
        parts: [torchValueArchive(decodeValue(payload, item.index.fqn))],
        info: { itemFormat: "torch" },
      };
    const td = item.tensorData!;
    assertTorchDtype(td.properties.dtype, item.index.fqn);
    const { prefix, suffix } = torchTensorArchive(td.properties.dtype, td.chunk.sizes, payload);
    return { parts: [prefix, payload, suffix], info: { itemFormat: "torch" } };
  },
  unframe(stored, info, expect, fqn, where) {
    // One budget for the item, sized by the larger of its stored bytes and the tensor it holds.
    const expected = expect.kind === "tensor" ? numel(expect.sizes) * DTYPE_BYTES[expect.dtype] : 0;
    const budget = new DecodeBudget(`torch item "${fqn}" in ${where}`, Math.max(stored.byteLength, expected));
    // zstd frames are undone first; the zip CRCs inside decide whether the bytes are intact.
    const plain = info.transforms?.length ? unzstd(stored, fqn, where, budget) : stored;
    const item = decodeTorchItem(plain, fqn, where, budget);
    if (expect.kind === "value") {
      if (item.kind !== "value")
        throw new MetadataError(
          `Malformed torch item "${fqn}" in ${where}: expected a value, found a tensor`,
        );
      return encodeValue(item.value, fqn);
    }
    if (item.kind !== "tensor" || item.dtype !== expect.dtype || !sameShape(item.shape, expect.sizes)) {
      throw new MetadataError(
        `Malformed torch item "${fqn}" in ${where}: expected a tensor of shape [${expect.sizes.join(", ")}] as the metadata says`,
      );
    }
    return item.bytes;
  },
};
