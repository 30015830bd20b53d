import { crc32, crc32c } from "#platform/crc";
import { ChecksumMismatchError } from "../errors.js";
import type { ChecksumBlocks, StorageInfo } from "../plan/metadata.js";
import { runningChecksums } from "./running-checksums.js";

export { runningChecksums };

/**
 * The per-item checksum algorithms a storage entry may record: `crc32` (IEEE 802.3, zlib's and
 * zip's), which dcpjs writes since `.metadata` format version 2, and `crc32c` (Castagnoli), which
 * version 1 checkpoints and safetensors checksum sidecars carry. Both are 32-bit CRCs with the same
 * detection of burst errors up to 32 bits; CRC-32 is the faster of the two here (`@node-rs/crc32`,
 * PCLMULQDQ; figures in docs/benchmarks.md).
 */
export type ChecksumAlgorithm = "crc32" | "crc32c";

/** The algorithm new dcpjs checkpoints record for every item. */
export const ITEM_CHECKSUM_ALGORITHM: ChecksumAlgorithm = "crc32";

/** Every algorithm a reader accepts. */
export const CHECKSUM_ALGORITHMS: readonly ChecksumAlgorithm[] = ["crc32", "crc32c"];

/** An item's recorded checksum. */
export interface ItemChecksum {
  /** Which CRC it is. */
  readonly algorithm: ChecksumAlgorithm;
  /** Its value, unsigned 32-bit. */
  readonly value: number;
}

/**
 * The checksum of some bytes, or of more bytes after `previous` (to checksum an item in pieces).
 *
 * @param algorithm - which CRC.
 * @param bytes - the bytes.
 * @param previous - the checksum of the bytes before these; absent for the first piece.
 * @returns the unsigned 32-bit CRC.
 */
export function computeChecksum(algorithm: ChecksumAlgorithm, bytes: Uint8Array, previous?: number): number {
  // A native call costs more than a table's pass over a few bytes (a load of many tiny items makes one per item).
  if (bytes.byteLength < SMALL_CHECKSUM_BYTES)
    return tableChecksum(algorithm === "crc32" ? CRC32_TABLE : CRC32C_TABLE, bytes, previous ?? 0);
  return algorithm === "crc32" ? crc32(bytes, previous) : crc32c(bytes, previous);
}

/** Bytes under which {@link computeChecksum} runs a lookup table in JavaScript rather than the native CRC. */
const SMALL_CHECKSUM_BYTES = 64;

/** The byte-wise lookup table of a reflected CRC-32 with the polynomial `poly` (reversed). */
function crcTable(poly: number): Int32Array {
  const table = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? poly ^ (c >>> 1) : c >>> 1;
    table[n] = c;
  }
  return table;
}

const CRC32_TABLE = crcTable(0xedb88320);
const CRC32C_TABLE = crcTable(0x82f63b78);

/** A reflected CRC-32 of `bytes` continuing from `previous`, byte by byte through `table` (as zlib's `crc32`). */
function tableChecksum(table: Int32Array, bytes: Uint8Array, previous: number): number {
  let c = ~previous;
  for (let i = 0; i < bytes.length; i++) c = table[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

/**
 * Block size of the running checksums dcpjs records for items longer than one block (bytes): a
 * reader that needs only part of such an item reads and verifies only the blocks it touches.
 * 1 MiB: 4 bytes of `.metadata` per MiB stored; a partial read fetches at most one block more
 * than it needs at each end.
 */
export const CHECKSUM_BLOCK_BYTES = 1024 * 1024;

export type { ChecksumBlocks } from "../plan/metadata.js";

/**
 * The display name of an algorithm in messages: `CRC-32` or `CRC-32C`.
 *
 * @param algorithm - the algorithm.
 */
export function checksumName(algorithm: ChecksumAlgorithm): string {
  return algorithm === "crc32" ? "CRC-32" : "CRC-32C";
}

/**
 * The checksum a storage entry records, or undefined for an item checked by length alone
 * (safetensors without a sidecar, formats with their own checks).
 *
 * @param info - the storage entry.
 */
export function itemChecksum(info: StorageInfo): ItemChecksum | undefined {
  if (info.crc32 !== undefined) return { algorithm: "crc32", value: info.crc32 };
  if (info.crc32c !== undefined) return { algorithm: "crc32c", value: info.crc32c };
  return undefined;
}

/**
 * The storage-entry fields that record a checksum: `{ crc32: value }` or `{ crc32c: value }`.
 *
 * @param algorithm - which CRC.
 * @param value - its value, unsigned 32-bit.
 */
export function checksumFields(
  algorithm: ChecksumAlgorithm,
  value: number,
): Pick<StorageInfo, "crc32" | "crc32c"> {
  return algorithm === "crc32" ? { crc32: value } : { crc32c: value };
}

/**
 * The storage-entry fields that record an item's checksum from its {@link runningChecksums}: the
 * checksum (the last running value) and, for an item of more than one block, `checksumBlocks`.
 *
 * @param algorithm - which CRC.
 * @param running - the item's running checksums, one per block of `blockBytes`.
 * @param blockBytes - the block size they were computed with (bytes).
 */
export function blockChecksumFields(
  algorithm: ChecksumAlgorithm,
  running: readonly number[],
  blockBytes: number,
): Pick<StorageInfo, "crc32" | "crc32c" | "checksumBlocks"> {
  const fields = checksumFields(algorithm, running.at(-1)!);
  if (running.length < 2) return fields;
  return { ...fields, checksumBlocks: { blockBytes, running: running.slice(0, -1) } };
}

/**
 * Checks the running checksums computed over blocks `first, first + 1, …` of an item against those
 * its storage entry records (`checksumBlocks`, and the item's checksum at its end).
 *
 * @param sum - the item's checksum.
 * @param blocks - its recorded running checksums, if any (else the item is one block).
 * @param first - the first block read (0 for a whole item).
 * @param running - the running checksums computed, one per block read (`runningChecksums` started
 * from {@link runningBefore}).
 * @param fqn - for the message.
 * @param where - `file @ offset+length`, for the message (or a function that builds it, called
 * only on a mismatch).
 * @throws {@link ChecksumMismatchError} at the first block whose running checksum differs; its
 * message names the block when the item has several.
 */
export function assertRunningChecksums(
  sum: ItemChecksum,
  blocks: ChecksumBlocks | undefined,
  first: number,
  running: readonly number[],
  fqn: string,
  where: string | (() => string),
): void {
  const last = blocks?.running.length ?? 0;
  for (let i = 0; i < running.length; i++) {
    const block = first + i;
    const expected = block < last ? blocks!.running[block]! : sum.value;
    if (running[i] === expected) continue;
    const file = typeof where === "string" ? where : where();
    const at = last > 0 ? `${file}, running checksum at the end of block ${block} of ${last + 1}` : file;
    throw new ChecksumMismatchError(fqn, expected, running[i]!, at, checksumName(sum.algorithm));
  }
}

/**
 * The running checksum to start from when verifying an item from block `first` on: the one
 * recorded at the end of block `first − 1`, or undefined (from scratch) for the first block.
 *
 * @param blocks - the item's running checksums.
 * @param first - the first block read.
 */
export function runningBefore(blocks: ChecksumBlocks | undefined, first: number): number | undefined {
  return first === 0 ? undefined : blocks!.running[first - 1];
}

/**
 * Checks an item's bytes — all of it (`first` 0), or its blocks from `first` on — on this thread:
 * their running checksums (one CRC call for an item recorded without blocks), compared by
 * {@link assertRunningChecksums}.
 *
 * @param sum - the item's checksum.
 * @param blocks - its recorded running checksums, if any.
 * @param first - the first block the bytes start at.
 * @param bytes - the bytes read: whole blocks from `first` on (to the item's end, or a block end).
 * @param fqn - for the message.
 * @param where - for the message, as {@link assertRunningChecksums}.
 * @throws {@link ChecksumMismatchError} as {@link assertRunningChecksums}.
 */
export function assertItemBlocks(
  sum: ItemChecksum,
  blocks: ChecksumBlocks | undefined,
  first: number,
  bytes: Uint8Array,
  fqn: string,
  where: string | (() => string),
): void {
  const running = blocks
    ? runningChecksums(sum.algorithm, bytes, blocks.blockBytes, runningBefore(blocks, first))
    : [computeChecksum(sum.algorithm, bytes)];
  assertRunningChecksums(sum, blocks, first, running, fqn, where);
}
