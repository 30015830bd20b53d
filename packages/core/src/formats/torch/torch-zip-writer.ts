import { concatBytes } from "#platform";

/** A member of an archive to write: its name, and its bytes or (for the streamed payload) its length and CRC-32. */
export interface ZipMemberSpec {
  readonly name: string;
  /** The bytes; absent for the one payload member, whose bytes the caller streams. */
  readonly data?: Uint8Array;
  readonly length: number;
  readonly crc32: number;
}

/** Alignment of the payload from the start of the archive, as torch's writer (`.storage_alignment`). */
export const TORCH_PAYLOAD_ALIGNMENT = 64;
const MAX32 = 0xffffffff;

/**
 * Lays out a STORED zip around one streamed payload, as `torch.save` archives: local headers
 * (the payload's data padded to start at a multiple of {@link TORCH_PAYLOAD_ALIGNMENT}), the
 * members, the central directory and its end record, with zip64 fields where sizes or offsets
 * need them. The caller writes `prefix`, then the payload's own bytes (no copy), then `suffix`.
 *
 * @param members - the members in order; exactly one has no `data` (the payload).
 * @returns the bytes before and after the payload, and the archive's total length.
 */
export function layoutZip(members: readonly ZipMemberSpec[]): {
  prefix: Uint8Array;
  suffix: Uint8Array;
  length: number;
} {
  const enc = new TextEncoder();
  const before: Uint8Array[] = [];
  const after: Uint8Array[] = [];
  let target = before;
  let at = 0;
  const central: Uint8Array[] = [];
  for (const m of members) {
    const name = enc.encode(m.name);
    const z64 = m.length >= MAX32;
    const localOffset = at;
    let extraLen = z64 ? 20 : 0;
    let pad = 0;
    if (!m.data) {
      const start = at + 30 + name.byteLength + extraLen;
      pad = (TORCH_PAYLOAD_ALIGNMENT - ((start + 4) % TORCH_PAYLOAD_ALIGNMENT)) % TORCH_PAYLOAD_ALIGNMENT;
      extraLen += 4 + pad;
    }
    const local = new Uint8Array(30 + name.byteLength + extraLen);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, z64 ? 45 : 20, true);
    lv.setUint16(12, 0x21, true); // 1980-01-01
    lv.setUint32(14, m.crc32, true);
    lv.setUint32(18, z64 ? MAX32 : m.length, true);
    lv.setUint32(22, z64 ? MAX32 : m.length, true);
    lv.setUint16(26, name.byteLength, true);
    lv.setUint16(28, extraLen, true);
    local.set(name, 30);
    let e = 30 + name.byteLength;
    if (z64) {
      lv.setUint16(e, 0x0001, true);
      lv.setUint16(e + 2, 16, true);
      lv.setBigUint64(e + 4, BigInt(m.length), true);
      lv.setBigUint64(e + 12, BigInt(m.length), true);
      e += 20;
    }
    if (!m.data) {
      lv.setUint16(e, 0x4246, true); // "FB": padding, as torch's writer
      lv.setUint16(e + 2, pad, true);
    }
    target.push(local);
    at += local.byteLength;
    if (m.data) target.push(m.data);
    else target = after; // the payload's bytes go between prefix and suffix
    at += m.length;

    const off64 = localOffset >= MAX32;
    const cExtra = (z64 ? 16 : 0) + (off64 ? 8 : 0);
    const c = new Uint8Array(46 + name.byteLength + (cExtra ? 4 + cExtra : 0));
    const cv = new DataView(c.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(4, 45, true);
    cv.setUint16(6, z64 || off64 ? 45 : 20, true);
    cv.setUint16(14, 0x21, true);
    cv.setUint32(16, m.crc32, true);
    cv.setUint32(20, z64 ? MAX32 : m.length, true);
    cv.setUint32(24, z64 ? MAX32 : m.length, true);
    cv.setUint16(28, name.byteLength, true);
    cv.setUint16(30, cExtra ? 4 + cExtra : 0, true);
    cv.setUint32(42, off64 ? MAX32 : localOffset, true);
    c.set(name, 46);
    if (cExtra) {
      let x = 46 + name.byteLength;
      cv.setUint16(x, 0x0001, true);
      cv.setUint16(x + 2, cExtra, true);
      x += 4;
      if (z64) {
        cv.setBigUint64(x, BigInt(m.length), true);
        cv.setBigUint64(x + 8, BigInt(m.length), true);
        x += 16;
      }
      if (off64) cv.setBigUint64(x, BigInt(localOffset), true);
    }
    central.push(c);
  }
  const cdOffset = at;
  const cdSize = central.reduce((n, c) => n + c.byteLength, 0);
  after.push(...central);
  at += cdSize;
  if (cdOffset >= MAX32 || at >= MAX32) {
    const z = new Uint8Array(56 + 20);
    const zv = new DataView(z.buffer);
    zv.setUint32(0, 0x06064b50, true);
    zv.setBigUint64(4, 44n, true);
    zv.setUint16(12, 45, true);
    zv.setUint16(14, 45, true);
    zv.setBigUint64(24, BigInt(members.length), true);
    zv.setBigUint64(32, BigInt(members.length), true);
    zv.setBigUint64(40, BigInt(cdSize), true);
    zv.setBigUint64(48, BigInt(cdOffset), true);
    zv.setUint32(56, 0x07064b50, true); // locator
    zv.setBigUint64(64, BigInt(at), true);
    zv.setUint32(72, 1, true);
    after.push(z);
    at += z.byteLength;
  }
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, Math.min(members.length, 0xffff), true);
  ev.setUint16(10, Math.min(members.length, 0xffff), true);
  ev.setUint32(12, Math.min(cdSize, MAX32), true);
  ev.setUint32(16, Math.min(cdOffset, MAX32), true);
  after.push(end);
  at += end.byteLength;
  return { prefix: concatBytes(before), suffix: concatBytes(after), length: at };
}
