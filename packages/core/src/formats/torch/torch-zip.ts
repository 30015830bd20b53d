import { crc32 } from "#platform/crc";
import { ChecksumMismatchError, MetadataError } from "../../errors.js";
import type { DecodeBudget } from "../../model/decode-budget.js";

/** One member of a STORED zip, as its central directory describes it. */
export interface ZipMember {
  readonly name: string;
  /** The member's bytes (a view of the archive; {@link ARCHIVE_HOLE} where they were not read). */
  readonly data: Uint8Array;
  /** Its data's first byte in the archive, and its bytes. */
  readonly start: number;
  readonly size: number;
  /** CRC-32 recorded in the central directory. */
  readonly crc32: number;
}

/**
 * An archive's bytes as {@link readZip} reads them: its length, little-endian fields at offsets,
 * and views of ranges — of a whole archive in memory, or of one read only in part
 * ({@link partialArchive}).
 */
export interface ArchiveBytes {
  readonly byteLength: number;
  readonly view: Pick<DataView, "getUint16" | "getUint32" | "getBigUint64">;
  subarray(start: number, end: number): Uint8Array;
}

/** The data of a member that lies (partly) in the bytes a {@link partialArchive} did not read. */
export const ARCHIVE_HOLE: Uint8Array = new Uint8Array(0);

/**
 * An archive of `length` bytes of which only the first and last bytes were read — `head` at 0,
 * `tail` ending at `length` — as {@link readZip} reads it: a field in the bytes between them
 * throws a {@link MetadataError}; a range that is not within one of them is {@link ARCHIVE_HOLE}.
 *
 * @param head - the archive's first bytes.
 * @param tail - its last bytes.
 * @param length - its length (bytes).
 */
export function partialArchive(head: Uint8Array, tail: Uint8Array, length: number): ArchiveBytes {
  const tailAt = length - tail.byteLength;
  const headView = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const tailView = new DataView(tail.buffer, tail.byteOffset, tail.byteLength);
  const field =
    <T>(get: (v: DataView, at: number) => T, size: number) =>
    (at: number): T => {
      if (at >= 0 && at + size <= head.byteLength) return get(headView, at);
      if (at >= tailAt && at + size <= length) return get(tailView, at - tailAt);
      throw new MetadataError(`Malformed torch item: a field at ${at} lies in the bytes not read`);
    };
  return {
    byteLength: length,
    view: {
      getUint16: field((v, at) => v.getUint16(at, true), 2),
      getUint32: field((v, at) => v.getUint32(at, true), 4),
      getBigUint64: field((v, at) => v.getBigUint64(at, true), 8),
    },
    subarray(start, end) {
      if (start >= 0 && end <= head.byteLength) return head.subarray(start, end);
      if (start >= tailAt && end <= length) return tail.subarray(start - tailAt, end - tailAt);
      return ARCHIVE_HOLE;
    },
  };
}

/** A member's place in the archive: its local record (header and data) and its name. */
interface Extent {
  readonly name: string;
  readonly from: number;
  readonly to: number;
}

/**
 * Reads the members of a `torch.save` archive (a zip whose members are STORED) through its central
 * directory, with zip64 — never trusting the local headers for sizes — and refuses an archive
 * that two readers could read differently: two members of one name, members whose records
 * overlap each other or the central directory, a local header that disagrees with the central
 * directory (name, method, CRC-32 and sizes where it records them, the data descriptor's CRC-32),
 * a central directory that is not exactly the size its end record says, bytes after the end
 * record, members outside the archive's folder (the first member's, as torch reads it). Every
 * field is read within the bytes that hold it (a zip64 extra field within its own length).
 *
 * @param archive - the whole archive, or one read in part ({@link partialArchive}).
 * @param what - names it in errors (fqn and file).
 * @param budget - the decode's budget, charged a node per member.
 * @returns the members by their path inside the archive's folder (`data.pkl`, `data/0`).
 * @throws {@link MetadataError} `MALFORMED_METADATA` for a damaged, compressed or ambiguous archive.
 */
export function readZip(
  archive: Uint8Array | ArchiveBytes,
  what: string,
  budget: DecodeBudget,
): Map<string, ZipMember> {
  const bytes: ArchiveBytes =
    archive instanceof Uint8Array
      ? {
          byteLength: archive.byteLength,
          view: new DataView(archive.buffer, archive.byteOffset, archive.byteLength),
          subarray: (start, end) => archive.subarray(start, end),
        }
      : archive;
  const { view } = bytes;
  const fail = (m: string): never => {
    throw new MetadataError(`Malformed torch item ${what}: ${m}`);
  };
  const n = bytes.byteLength;
  /** A little-endian u64 that must be a safe integer. */
  const u64 = (at: number, field: string): number => {
    const v = view.getBigUint64(at, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`${field} of ${v} is beyond any archive`);
    return Number(v);
  };
  let eocd = -1;
  for (let i = n - 22; i >= Math.max(0, n - 22 - 65_535); i--) {
    if (view.getUint32(i, true) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) fail("no end of central directory (not a zip)");
  const commentLen = view.getUint16(eocd + 20, true);
  if (eocd + 22 + commentLen !== n)
    fail(
      `expected the end of central directory to end the archive, ${n - eocd - 22 - commentLen} bytes differ`,
    );
  let count = view.getUint16(eocd + 10, true);
  let cdSize = view.getUint32(eocd + 12, true);
  let cdOffset = view.getUint32(eocd + 16, true);
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    const locator = eocd - 20;
    if (locator < 0 || view.getUint32(locator, true) !== 0x07064b50) fail("no zip64 locator");
    const z = u64(locator + 8, "a zip64 end of central directory offset");
    if (z + 56 > locator || view.getUint32(z, true) !== 0x06064b50) fail("no zip64 end of central directory");
    count = u64(z + 32, "a member count");
    cdSize = u64(z + 40, "a central directory size");
    cdOffset = u64(z + 48, "a central directory offset");
  }
  if (cdOffset + cdSize > eocd || count > cdSize / 46) fail("the central directory lies outside the archive");
  budget.nodes(count);
  const members = new Map<string, ZipMember>();
  const extents: Extent[] = [];
  const names = new TextDecoder();
  let folder: string | undefined;
  let at = cdOffset;
  for (let i = 0; i < count; i++) {
    if (at + 46 > cdOffset + cdSize || view.getUint32(at, true) !== 0x02014b50)
      fail("a damaged central directory");
    const method = view.getUint16(at + 10, true);
    const crc = view.getUint32(at + 16, true);
    const size32 = view.getUint32(at + 20, true);
    let size = size32;
    let usize = view.getUint32(at + 24, true);
    const nameLen = view.getUint16(at + 28, true);
    const extraLen = view.getUint16(at + 30, true);
    const commentLen = view.getUint16(at + 32, true);
    let local = view.getUint32(at + 42, true);
    const extraEnd = at + 46 + nameLen + extraLen;
    if (extraEnd + commentLen > cdOffset + cdSize) fail("a damaged central directory");
    const rawName = bytes.subarray(at + 46, at + 46 + nameLen);
    const name = names.decode(rawName);
    // zip64 extended information: the fields that are 0xffffffff, in order, within its length.
    for (let e = at + 46 + nameLen; e < extraEnd; ) {
      if (e + 4 > extraEnd) fail(`member ${name} has a truncated extra field`);
      const id = view.getUint16(e, true);
      const len = view.getUint16(e + 2, true);
      if (e + 4 + len > extraEnd) fail(`member ${name} has an extra field longer than its extra bytes`);
      if (id === 0x0001) {
        let f = e + 4;
        const next = (field: string) => {
          if (f + 8 > e + 4 + len) fail(`member ${name} has a zip64 field too short for its ${field}`);
          f += 8;
          return u64(f - 8, `the ${field} of member ${name}`);
        };
        if (usize === 0xffffffff) usize = next("size");
        if (size === 0xffffffff) size = next("compressed size");
        if (local === 0xffffffff) local = next("local header offset");
      }
      e += 4 + len;
    }
    if (method !== 0) fail(`member ${name} is compressed (method ${method}); torch stores members`);
    if (size !== usize) fail(`member ${name} has sizes ${size} and ${usize}`);
    if (local + 30 > cdOffset || view.getUint32(local, true) !== 0x04034b50)
      fail(`no local header for ${name}`);
    const localNameLen = view.getUint16(local + 26, true);
    const start = local + 30 + localNameLen + view.getUint16(local + 28, true);
    if (start + size > cdOffset) fail(`member ${name} lies outside the archive`);
    checkLocalHeader(view, bytes, local, { name, rawName, method, crc, size32, size, start, cdOffset }, fail);
    const slash = name.indexOf("/");
    folder ??= name.slice(0, slash + 1);
    if (slash < 0 || name.slice(0, slash + 1) !== folder)
      fail(`member ${name} lies outside the archive's folder ${folder || "(none)"}`);
    const path = name.slice(slash + 1);
    if (members.has(path)) fail(`member ${name} appears twice (ambiguous: readers may take either)`);
    members.set(path, { name, data: bytes.subarray(start, start + size), start, size, crc32: crc });
    extents.push({ name, from: local, to: start + size });
    at = extraEnd + commentLen;
  }
  if (at !== cdOffset + cdSize)
    fail(`the central directory is ${cdSize} bytes, its ${count} entries take ${at - cdOffset}`);
  extents.sort((a, b) => a.from - b.from);
  for (let i = 1; i < extents.length; i++) {
    if (extents[i]!.from < extents[i - 1]!.to)
      fail(`members ${extents[i - 1]!.name} and ${extents[i]!.name} overlap (ambiguous: readers may differ)`);
  }
  return members;
}

/** What the central directory says of a member, to hold its local header to. */
interface CentralEntry {
  readonly name: string;
  readonly rawName: Uint8Array;
  readonly method: number;
  readonly crc: number;
  /** The 32-bit size field (0xffffffff when zip64 holds the size). */
  readonly size32: number;
  readonly size: number;
  readonly start: number;
  readonly cdOffset: number;
}

/**
 * Refuses a local header that disagrees with its central directory entry: another name or
 * method; with sizes in the header (no data descriptor), another CRC-32 or size; with a data
 * descriptor (bit 3, as torch writes), a descriptor whose CRC-32 differs.
 */
function checkLocalHeader(
  view: ArchiveBytes["view"],
  bytes: ArchiveBytes,
  local: number,
  c: CentralEntry,
  fail: (m: string) => never,
): void {
  const nameLen = view.getUint16(local + 26, true);
  const localName = bytes.subarray(local + 30, local + 30 + nameLen);
  if (nameLen !== c.rawName.byteLength || !localName.every((b, i) => b === c.rawName[i]))
    fail(
      `the local header of ${c.name} names ${JSON.stringify(new TextDecoder().decode(localName).slice(0, 64))}`,
    );
  const method = view.getUint16(local + 8, true);
  if (method !== c.method)
    fail(`the local header of ${c.name} says method ${method}, the directory ${c.method}`);
  const flags = view.getUint16(local + 6, true);
  const crc = view.getUint32(local + 14, true);
  const size = view.getUint32(local + 18, true);
  const usize = view.getUint32(local + 22, true);
  if (flags & 0x08) {
    // Data descriptor: the header's fields are zero or the directory's; the descriptor follows the data.
    if (
      (crc !== 0 && crc !== c.crc) ||
      (size !== 0 && size !== c.size32) ||
      (usize !== 0 && usize !== c.size32)
    )
      fail(`the local header of ${c.name} disagrees with the central directory`);
    let d = c.start + c.size;
    if (d + 4 <= c.cdOffset && view.getUint32(d, true) === 0x08074b50) d += 4;
    if (d + 4 > c.cdOffset) fail(`member ${c.name} has no data descriptor`);
    const described = view.getUint32(d, true);
    if (described !== c.crc)
      fail(`the data descriptor of ${c.name} says CRC-32 ${described}, the directory ${c.crc}`);
    return;
  }
  if (crc !== c.crc || (size !== 0xffffffff && size !== c.size) || (usize !== 0xffffffff && usize !== c.size))
    fail(`the local header of ${c.name} disagrees with the central directory (CRC-32 or size)`);
}

/**
 * The member of a torch archive at `path` inside its folder (torch prefixes every name with the
 * archive's folder, e.g. `archive/data.pkl`), its CRC-32 verified — which torch itself never does.
 *
 * @param members - the archive's members, by path inside its folder ({@link readZip}).
 * @param path - e.g. `data.pkl` or `data/0`.
 * @param fqn - the entry, for errors.
 * @param where - the file and range, for errors.
 * @throws {@link MetadataError} when there is no such member; {@link ChecksumMismatchError}
 * (`CHECKSUM_MISMATCH`, naming the fqn) when its bytes differ from their CRC-32.
 */
export function verifiedMember(
  members: ReadonlyMap<string, ZipMember>,
  path: string,
  fqn: string,
  where: string,
): Uint8Array {
  const member = members.get(path);
  if (!member) throw new MetadataError(`Malformed torch item "${fqn}" in ${where}: no member */${path}`);
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
