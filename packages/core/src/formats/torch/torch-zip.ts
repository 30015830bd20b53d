import { crc32 } from "@node-rs/crc32";
import { ChecksumMismatchError, MetadataError } from "../../errors.js";

/** One member of a STORED zip, as its central directory describes it. */
export interface ZipMember {
  readonly name: string;
  /** The member's bytes (a view of the archive). */
  readonly data: Uint8Array;
  /** CRC-32 recorded in the central directory. */
  readonly crc32: number;
}

/**
 * Reads the members of a `torch.save` archive (a zip whose members are STORED) through its central
 * directory, with zip64 — never trusting the local headers for sizes.
 *
 * @param bytes - the whole archive.
 * @param what - names it in errors (fqn and file).
 * @returns the members by name.
 * @throws {@link MetadataError} `MALFORMED_METADATA` for a damaged or compressed archive.
 */
export function readZip(bytes: Uint8Array, what: string): Map<string, ZipMember> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fail = (m: string): never => {
    throw new MetadataError(`Malformed torch item ${what}: ${m}`);
  };
  const n = bytes.byteLength;
  let eocd = -1;
  for (let i = n - 22; i >= Math.max(0, n - 22 - 65_535); i--) {
    if (view.getUint32(i, true) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) fail("no end of central directory (not a zip)");
  let count = view.getUint16(eocd + 10, true);
  let cdSize = view.getUint32(eocd + 12, true);
  let cdOffset = view.getUint32(eocd + 16, true);
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    const locator = eocd - 20;
    if (locator < 0 || view.getUint32(locator, true) !== 0x07064b50) fail("no zip64 locator");
    const z = Number(view.getBigUint64(locator + 8, true));
    if (z + 56 > n || view.getUint32(z, true) !== 0x06064b50) fail("no zip64 end of central directory");
    count = Number(view.getBigUint64(z + 32, true));
    cdSize = Number(view.getBigUint64(z + 40, true));
    cdOffset = Number(view.getBigUint64(z + 48, true));
  }
  if (cdOffset + cdSize > n || count > cdSize / 46) fail("the central directory lies outside the archive");
  const members = new Map<string, ZipMember>();
  let at = cdOffset;
  for (let i = 0; i < count; i++) {
    if (at + 46 > n || view.getUint32(at, true) !== 0x02014b50) fail("a damaged central directory");
    const method = view.getUint16(at + 10, true);
    const crc = view.getUint32(at + 16, true);
    let size = view.getUint32(at + 20, true);
    let usize = view.getUint32(at + 24, true);
    const nameLen = view.getUint16(at + 28, true);
    const extraLen = view.getUint16(at + 30, true);
    const commentLen = view.getUint16(at + 32, true);
    let local = view.getUint32(at + 42, true);
    if (at + 46 + nameLen + extraLen > n) fail("a damaged central directory");
    const name = new TextDecoder().decode(bytes.subarray(at + 46, at + 46 + nameLen));
    // zip64 extended information: the fields that are 0xffffffff, in order.
    for (let e = at + 46 + nameLen; e + 4 <= at + 46 + nameLen + extraLen; ) {
      const id = view.getUint16(e, true);
      const len = view.getUint16(e + 2, true);
      if (id === 0x0001) {
        let f = e + 4;
        const next = () => {
          const v = Number(view.getBigUint64(f, true));
          f += 8;
          return v;
        };
        if (usize === 0xffffffff) usize = next();
        if (size === 0xffffffff) size = next();
        if (local === 0xffffffff) local = next();
      }
      e += 4 + len;
    }
    if (method !== 0) fail(`member ${name} is compressed (method ${method}); torch stores members`);
    if (size !== usize) fail(`member ${name} has sizes ${size} and ${usize}`);
    if (local + 30 > n || view.getUint32(local, true) !== 0x04034b50) fail(`no local header for ${name}`);
    const start = local + 30 + view.getUint16(local + 26, true) + view.getUint16(local + 28, true);
    if (start + size > n) fail(`member ${name} lies outside the archive`);
    members.set(name, { name, data: bytes.subarray(start, start + size), crc32: crc });
    at += 46 + nameLen + extraLen + commentLen;
  }
  return members;
}

/**
 * The member of a torch archive whose name ends with `suffix` (torch prefixes every name with the
 * archive's folder, e.g. `archive/data.pkl`), its CRC-32 verified — which torch itself never does.
 *
 * @param members - the archive's members.
 * @param suffix - e.g. `/data.pkl` or `/data/0`.
 * @param fqn - the entry, for errors.
 * @param where - the file and range, for errors.
 * @throws {@link MetadataError} when there is no such member; {@link ChecksumMismatchError}
 * (`CHECKSUM_MISMATCH`, naming the fqn) when its bytes differ from their CRC-32.
 */
export function verifiedMember(
  members: ReadonlyMap<string, ZipMember>,
  suffix: string,
  fqn: string,
  where: string,
): Uint8Array {
  const member = [...members.values()].find(
    (m) => m.name.endsWith(suffix) && m.name.split("/").length === suffix.split("/").length,
  );
  if (!member) throw new MetadataError(`Malformed torch item "${fqn}" in ${where}: no member *${suffix}`);
  const actual = crc32(member.data);
  if (actual !== member.crc32) {
    throw new ChecksumMismatchError(
      fqn,
      member.crc32,
      actual,
      `${where} (zip member ${member.name})`,
      "CRC-32",
    );
  }
  return member.data;
}
