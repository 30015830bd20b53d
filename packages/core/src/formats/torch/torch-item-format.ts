import { MetadataError } from "../../errors.js";
import { DecodeBudget } from "../../model/decode-budget.js";
import { DTYPE_BYTES } from "../../model/dtype.js";
import { numel, sameShape } from "../../model/geometry.js";
import { decodeValue, encodeValue } from "../../model/value-codec.js";
import type { ItemFormat } from "../item-format.js";
import { decodeTorchItem, unzstd } from "./torch-item.js";
import {
  assertTorchDtype,
  encodeTorchMetadata,
  torchTensorArchive,
  torchValueArchive,
} from "./torch-write.js";

/**
 * PyTorch DCP's item framing: each item a `torch.save` archive (a STORED zip) — a tensor chunk
 * around its bytes (streamed, not copied), a value as the archive of its pickle — perhaps through
 * `stream.zstd/1`; verified on read by the zip members' CRC-32s; `.metadata` as PyTorch's pickle.
 */
export const TORCH_ITEM_FORMAT: ItemFormat = {
  name: "torch",
  zeroCopy: false,
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
  encodeMetadata: encodeTorchMetadata,
};
