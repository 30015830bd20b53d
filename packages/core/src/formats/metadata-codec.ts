import { decode, encode } from "@msgpack/msgpack";
import { crc32c } from "#platform/crc";
import { MetadataError } from "../errors.js";
import { type DecodeBudget, decodeGuarded } from "../model/decode-budget.js";
import { assertMsgpackWithinLimits } from "../model/msgpack-bounds.js";
import type { Metadata } from "../plan/metadata.js";
import { columnarMetadata } from "../plan/metadata-columns.js";
import { CHECKSUM_ALGORITHMS, type ChecksumAlgorithm, ITEM_CHECKSUM_ALGORITHM } from "./checksum.js";
import { fail, show } from "./metadata-checks.js";
import { decodeMetadataV1 } from "./metadata-v1.js";
import { columnsBody, columnsByteLength, columnsOf, decodeColumnsBody } from "./metadata-v2.js";
import { validateMetadata } from "./validate-metadata.js";

export { assertSafeRelativePath, MAX_ITEM_BYTES, MAX_TILING_COMPARISONS } from "./metadata-checks.js";

/** The `format` field of every dcpjs `.metadata` file. */
export const METADATA_FORMAT = "dcpjs.metadata";
/**
 * The metadata layout version this build writes (see docs/format.md): 2, columns of typed
 * numbers, its `checksum` field naming the items' CRC (`crc32`). Version 1 (records as arrays,
 * CRC-32C implied) is still read.
 */
export const METADATA_FORMAT_VERSION = 2;
/**
 * The layout version of a `.metadata` whose items reference other checkpoints' files
 * (`StorageInfo.baseCheckpoint`, an incremental checkpoint): 3 — version 2 plus `bases` and
 * `storage.base`. A checkpoint without references is still written as version 2, so that older
 * dcpjs reads it; one with references is refused by them (they know no version 3) rather than read
 * as if self-contained.
 */
export const METADATA_FORMAT_VERSION_REFERENCES = 3;
/** Largest `.metadata` file a reader accepts (bytes): 1 GiB, far above the tens to hundreds of bytes per item written. */
export const MAX_METADATA_BYTES = 1024 * 1024 * 1024;
/** Bytes of the CRC-32C trailer after the msgpack body. */
const TRAILER_BYTES = 4;

/**
 * Encodes a checkpoint's metadata as the bytes of `.metadata`: a msgpack map in columns (layout
 * version 2, docs/format.md) followed by the CRC-32C of that map, 4 bytes little-endian.
 *
 * @param metadata - the metadata, with storage data filled in for every chunk and value.
 * @returns the file's bytes.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when an item has no storage entry or no
 * checksum, items record different checksum algorithms or running-checksum block sizes (the file
 * names one of each for all), or a tensor has more than 254 dimensions.
 */
export function encodeMetadata(metadata: Metadata): Uint8Array {
  const columns = columnsOf(metadata);
  const body = encode(
    columnsBody(
      columns,
      METADATA_FORMAT,
      [METADATA_FORMAT_VERSION, METADATA_FORMAT_VERSION_REFERENCES],
      ITEM_CHECKSUM_ALGORITHM,
    ),
    // Room for the columns up front: the encoder would otherwise grow (copy) its buffer many times.
    { initialBufferSize: columnsByteLength(columns) + 64 * 1024 },
  );
  const out = new Uint8Array(body.byteLength + TRAILER_BYTES);
  out.set(body);
  new DataView(out.buffer).setUint32(body.byteLength, crc32c(body), true);
  return out;
}

/**
 * Decodes and validates `.metadata` bytes written by {@link encodeMetadata} (layout version 2) or
 * by dcpjs before it (version 1): {@link decodeRawMetadata}, then `validateMetadata` (chunk
 * bounds and tiling, storage entries for every chunk and value, item lengths, safe relative
 * paths, no `__proto__` keys).
 *
 * @param bytes - the file's bytes.
 * @returns the metadata.
 * @throws {@link MetadataError} `MALFORMED_METADATA` saying what was expected and found (also for
 * anything else a decoder would throw), or `UNSAFE_PATH` for a path escaping the checkpoint folder.
 */
export function decodeMetadata(bytes: Uint8Array): Metadata {
  return decodeGuarded(".metadata", () => validateMetadata(decodeUnchecked(bytes)));
}

/**
 * Decodes `.metadata` bytes of layout version 2 or 1 into raw metadata, checking only the file's
 * own structure — the CRC-32C trailer, the format and version, every field's type, column lengths
 * and indices — and walking the msgpack within a {@link DecodeBudget} first; the metadata itself is
 * `validateMetadata`'s to check (the dcpjs checkpoint format's decoder).
 *
 * @param bytes - the file's bytes.
 * @throws {@link MetadataError} `MALFORMED_METADATA` saying what was expected and found.
 */
export function decodeRawMetadata(bytes: Uint8Array): Metadata {
  return decodeGuarded(".metadata", () => decodeUnchecked(bytes));
}

function decodeUnchecked(bytes: Uint8Array): Metadata {
  if (bytes.byteLength > MAX_METADATA_BYTES)
    fail(`expected at most ${MAX_METADATA_BYTES} bytes, got ${bytes.byteLength}`);
  if (bytes.byteLength <= TRAILER_BYTES)
    fail(`expected more than ${TRAILER_BYTES} bytes, got ${bytes.byteLength}`);
  const bodyLength = bytes.byteLength - TRAILER_BYTES;
  const body = bytes.subarray(0, bodyLength);
  const stored = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(bodyLength, true);
  const actual = crc32c(body);
  if (stored !== actual) {
    fail(
      `CRC-32C of the body is 0x${actual.toString(16).padStart(8, "0")}, expected 0x${stored.toString(16).padStart(8, "0")} (damaged or not a dcpjs checkpoint)`,
    );
  }
  assertMsgpackWithinLimits(body, ".metadata");
  let raw: unknown;
  try {
    raw = decode(body);
  } catch (cause) {
    throw new MetadataError("Malformed .metadata: the body is not valid msgpack", { cause });
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) fail("expected a map at the top level");
  const top = raw as Record<string, unknown>;
  if (top.format !== METADATA_FORMAT) fail(`expected format "${METADATA_FORMAT}", got ${show(top.format)}`);
  if (top.formatVersion === 1) return decodeMetadataV1(top); // CRC-32C implied
  if (
    top.formatVersion !== METADATA_FORMAT_VERSION &&
    top.formatVersion !== METADATA_FORMAT_VERSION_REFERENCES
  ) {
    fail(
      `expected formatVersion 1, ${METADATA_FORMAT_VERSION} or ${METADATA_FORMAT_VERSION_REFERENCES}, got ${show(top.formatVersion)} (written by a newer dcpjs?)`,
    );
  }
  if (!CHECKSUM_ALGORITHMS.includes(top.checksum as ChecksumAlgorithm))
    fail(`expected checksum to be one of ${CHECKSUM_ALGORITHMS.join(", ")}, got ${show(top.checksum)}`);
  return decodeColumns(
    top,
    top.checksum as ChecksumAlgorithm,
    top.formatVersion === METADATA_FORMAT_VERSION_REFERENCES,
  );
}

/** Decodes the columns of a version 2 or 3 body into a columnar metadata (docs/format.md). */
function decodeColumns(
  top: Record<string, unknown>,
  algorithm: ChecksumAlgorithm,
  references: boolean,
): Metadata {
  return columnarMetadata(
    decodeColumnsBody(top, algorithm, references, [
      METADATA_FORMAT_VERSION,
      METADATA_FORMAT_VERSION_REFERENCES,
    ]),
  );
}
