import type { DecodeBudget } from "../../model/decode-budget.js";

/** Largest output of one compressed zstd block (RFC 8878 §3.1.1.2.3: `Block_Maximum_Size`). */
const MAX_BLOCK_OUTPUT = 128 * 1024;

/**
 * Walks the frames of zstd data without decompressing them and charges `budget`, before anything
 * is allocated, the most the decompressor can allocate: each frame's declared content size, or
 * else its window and the sum of its blocks' largest outputs (a raw or RLE block its size, a
 * compressed block at most 128 KiB). A frame bomb — a few bytes declaring gigabytes, RLE blocks
 * repeating a byte — is refused by the budget; an honest frame is charged about its real output.
 * Malformed framing is left to the decompressor, which refuses it.
 *
 * @param bytes - one or more zstd (or skippable) frames.
 * @param budget - the decode's budget.
 * @throws {@link MetadataError} `MALFORMED_METADATA` when the frames may expand beyond the budget.
 */
export function chargeZstdFrames(bytes: Uint8Array, budget: DecodeBudget): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = bytes.byteLength;
  let at = 0;
  while (at + 4 <= n) {
    const magic = view.getUint32(at, true);
    if ((magic & 0xfffffff0) === 0x184d2a50) {
      if (at + 8 > n) return;
      at += 8 + view.getUint32(at + 4, true); // skippable frame
      continue;
    }
    if (magic !== 0xfd2fb528 || at + 5 > n) return;
    const flags = bytes[at + 4]!;
    const singleSegment = (flags >> 5) & 1;
    const fcsFlag = flags >> 6;
    const dictBytes = [0, 1, 2, 4][flags & 3]!;
    let p = at + 5;
    let window = 0;
    if (!singleSegment) {
      if (p >= n) return;
      const exponent = 10 + (bytes[p]! >> 3);
      const base = 2 ** exponent;
      window = base + (base / 8) * (bytes[p]! & 7);
      p += 1;
    }
    p += dictBytes;
    const fcsBytes = fcsFlag === 0 ? singleSegment : 1 << fcsFlag;
    if (p + fcsBytes > n) return;
    let contentSize = 0;
    if (fcsBytes === 1) contentSize = bytes[p]!;
    else if (fcsBytes === 2) contentSize = view.getUint16(p, true) + 256;
    else if (fcsBytes === 4) contentSize = view.getUint32(p, true);
    else if (fcsBytes === 8) contentSize = Number(view.getBigUint64(p, true));
    p += fcsBytes;
    // A declared size of 0 is treated as none: the decompressor then allocates the window.
    if (contentSize > 0) budget.bytes(contentSize);
    else budget.bytes(window);
    const blockMax = singleSegment ? MAX_BLOCK_OUTPUT : Math.min(MAX_BLOCK_OUTPUT, window);
    for (;;) {
      if (p + 3 > n) return;
      const header = bytes[p]! | (bytes[p + 1]! << 8) | (bytes[p + 2]! << 16);
      p += 3;
      const type = (header >> 1) & 3;
      const size = header >>> 3;
      budget.nodes();
      if (contentSize <= 0) budget.bytes(type === 2 ? blockMax : size);
      p += type === 1 ? 1 : size;
      if (header & 1) break;
    }
    at = p + ((flags >> 2) & 1) * 4;
  }
}
