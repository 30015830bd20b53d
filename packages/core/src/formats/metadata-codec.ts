import { constants as bufferConstants } from "node:buffer";
import { decode, encode } from "@msgpack/msgpack";
import { crc32c } from "@node-rs/crc32";
import { CheckpointError, MetadataError } from "../errors.js";
import { DTYPE_BYTES, isDType } from "../model/dtype.js";
import { findChunk } from "../model/geometry.js";
import { assertMsgpackWithinLimits, MAX_MSGPACK_DEPTH } from "../model/msgpack-bounds.js";
import type { ObjectPath } from "../model/state-dict.js";
import { numel } from "../model/tensor.js";
import {
  type ChunkStorageMetadata,
  type Metadata,
  metadataIndexKey,
  type StorageInfo,
  type StorageMetadataEntry,
} from "../plan/metadata.js";
import {
  CHECKSUM_ALGORITHMS,
  type ChecksumAlgorithm,
  ITEM_CHECKSUM_ALGORITHM,
  itemChecksum,
} from "./checksum.js";

/** The `format` field of every dcpjs `.metadata` file. */
export const METADATA_FORMAT = "dcpjs.metadata";
/**
 * The metadata layout version this build writes (see docs/format.md): 2, whose `checksum` field
 * names the items' CRC (`crc32`). Version 1 (CRC-32C implied) is still read.
 */
export const METADATA_FORMAT_VERSION = 2;
/** Largest `.metadata` file a reader accepts (bytes): 1 GiB, far above the ~100 bytes per item written. */
export const MAX_METADATA_BYTES = 1024 * 1024 * 1024;
/** Largest stored item (bytes): what one Node.js buffer can hold, so that a reader can stage it. */
export const MAX_ITEM_BYTES = Math.min(bufferConstants.MAX_LENGTH, Number.MAX_SAFE_INTEGER);
/**
 * Most pairwise chunk comparisons the tiling check makes for one checkpoint. DCP-style shardings
 * need about one per chunk; a file needing more is refused rather than checked slowly.
 */
export const MAX_TILING_COMPARISONS = 1 << 24;
/** Bytes of the CRC-32C trailer after the msgpack body. */
const TRAILER_BYTES = 4;

// The encoder hands the metadata's own (read-only) arrays to msgpack: it only reads them.
type EncodedEntry = [
  fqn: string,
  dtype: string | null,
  size: readonly number[] | null,
  chunks: (readonly [readonly number[], readonly number[]])[] | null,
];
type EncodedStorage = [
  fqn: string,
  offset: readonly number[] | null,
  relativePath: string,
  fileOffset: number,
  length: number,
  checksum: number,
  itemFormat?: string,
];

/** Longest item format name a storage record may carry. */
const MAX_ITEM_FORMAT_NAME = 64;

/**
 * Encodes a checkpoint's metadata as the bytes of `.metadata`: a msgpack map (layout in
 * docs/format.md) followed by the CRC-32C of that map, 4 bytes little-endian.
 *
 * @param metadata - the metadata, with storage data filled in.
 * @returns the file's bytes.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when an item has no checksum, or items
 * record different algorithms (the file names one for all).
 */
export function encodeMetadata(metadata: Metadata): Uint8Array {
  const stateDict: EncodedEntry[] = [];
  for (const [fqn, e] of metadata.stateDictMetadata) {
    stateDict.push(
      e.type === "bytes"
        ? [fqn, null, null, null]
        : [fqn, e.properties.dtype, e.size, e.chunks.map((c) => [c.offsets, c.sizes] as const)],
    );
  }
  const storage: EncodedStorage[] = [];
  let algorithm: ChecksumAlgorithm | undefined;
  for (const [fqn, e] of metadata.stateDictMetadata) {
    const offsets = e.type === "bytes" ? [null] : e.chunks.map((c) => c.offsets);
    for (const offset of offsets) {
      const info = metadata.storageData.get(metadataIndexKey({ fqn, offset }));
      if (!info) continue;
      const sum = itemChecksum(info);
      if (sum === undefined)
        throw new CheckpointError(
          "INVALID_ARGUMENT",
          `Expected a CRC-32 or CRC-32C for every item of a dcpjs checkpoint, "${fqn}" has none`,
        );
      algorithm ??= sum.algorithm;
      if (sum.algorithm !== algorithm)
        throw new CheckpointError(
          "INVALID_ARGUMENT",
          `Expected every item of a dcpjs checkpoint to record one checksum algorithm (${algorithm}), "${fqn}" has ${sum.algorithm}`,
        );
      const record: EncodedStorage = [fqn, offset, info.relativePath, info.offset, info.length, sum.value];
      // Items framed by another format (see ItemFormat) name it; dcpjs's own stay 6 long.
      if (info.itemFormat !== undefined && info.itemFormat !== "dcpjs") record.push(info.itemFormat);
      storage.push(record);
    }
  }
  const body = encode({
    format: METADATA_FORMAT,
    formatVersion: METADATA_FORMAT_VERSION,
    checksum: algorithm ?? ITEM_CHECKSUM_ALGORITHM,
    version: metadata.version,
    stateDict,
    plannerData: [...metadata.plannerData],
    storage,
    storageMeta: { ...metadata.storageMeta },
  });
  const out = new Uint8Array(body.byteLength + TRAILER_BYTES);
  out.set(body);
  new DataView(out.buffer).setUint32(body.byteLength, crc32c(body), true);
  return out;
}

function fail(message: string): never {
  throw new MetadataError(`Malformed .metadata: ${message}`);
}

function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/** A short rendering of a decoded value for messages (at most 120 characters). */
function show(v: unknown): string {
  const text = JSON.stringify(v, (_k, x: unknown) => (typeof x === "bigint" ? `${x}n` : x)) ?? String(v);
  return text.length > 120 ? `${text.slice(0, 117)}...` : text;
}

function counts(v: unknown, what: string): number[] {
  if (!Array.isArray(v) || !v.every(isCount))
    fail(`expected ${what} to be a list of non-negative integers, got ${show(v)}`);
  return v as number[];
}

function str(v: unknown, what: string): string {
  if (typeof v !== "string") fail(`expected ${what} to be a string, got ${typeof v}`);
  return v;
}

function checkFqn(fqn: string): string {
  if (fqn === "__proto__") fail(`expected state-dict keys other than "__proto__"`);
  return fqn;
}

/**
 * Checks that a stored relative path stays inside the checkpoint: non-empty `/`-separated
 * segments, none of them `.` or `..`, no leading `/`, backslash, drive letter or NUL.
 *
 * @param relativePath - the path from the metadata.
 * @throws {@link MetadataError} `UNSAFE_PATH` otherwise.
 */
export function assertSafeRelativePath(relativePath: string): void {
  const segments = relativePath.split("/");
  const bad =
    relativePath.length === 0 ||
    relativePath.includes("\\") ||
    relativePath.includes("\u0000") ||
    /^[A-Za-z]:/.test(relativePath) ||
    segments.some((s) => s === "" || s === "." || s === "..");
  if (bad) {
    throw new MetadataError(
      `Expected data file paths inside the checkpoint folder (relative, no "." or ".." segments), found ${show(relativePath)}`,
      { code: "UNSAFE_PATH" },
    );
  }
}

/**
 * Decodes and validates `.metadata` bytes written by {@link encodeMetadata}: the CRC-32C trailer,
 * the format and version, every field's type, chunk ranks and bounds, storage entries for every
 * chunk and value, item lengths that match their chunks, safe relative paths, and no `__proto__`
 * keys.
 *
 * @param bytes - the file's bytes.
 * @returns the metadata.
 * @throws {@link MetadataError} `MALFORMED_METADATA` saying what was expected and found, or
 * `UNSAFE_PATH` for a path escaping the checkpoint folder.
 */
export function decodeMetadata(bytes: Uint8Array): Metadata {
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
  if (top.formatVersion !== 1 && top.formatVersion !== METADATA_FORMAT_VERSION) {
    fail(
      `expected formatVersion 1 or ${METADATA_FORMAT_VERSION}, got ${show(top.formatVersion)} (written by a newer dcpjs?)`,
    );
  }
  // Version 1 recorded CRC-32C for every item; version 2 names the algorithm.
  const algorithm = top.formatVersion === 1 ? "crc32c" : top.checksum;
  if (!CHECKSUM_ALGORITHMS.includes(algorithm as ChecksumAlgorithm))
    fail(`expected checksum to be one of ${CHECKSUM_ALGORITHMS.join(", ")}, got ${show(algorithm)}`);
  const version = str(top.version, "version");

  const stateDictMetadata = new Map<string, StorageMetadataEntry>();
  let tilingBudget = MAX_TILING_COMPARISONS;
  if (!Array.isArray(top.stateDict)) fail("expected stateDict to be a list");
  for (const e of top.stateDict as unknown[]) {
    if (!Array.isArray(e) || e.length !== 4)
      fail("expected each stateDict entry to be [fqn, dtype, size, chunks]");
    const fqn = checkFqn(str(e[0], "an fqn"));
    if (stateDictMetadata.has(fqn)) fail(`duplicate entry "${fqn}"`);
    if (e[1] === null) {
      stateDictMetadata.set(fqn, { type: "bytes" });
      continue;
    }
    if (!isDType(e[1])) fail(`expected a dtype for "${fqn}", got ${show(e[1])}`);
    const size = counts(e[2], `the size of "${fqn}"`);
    if (!Array.isArray(e[3])) fail(`expected a chunk list for "${fqn}"`);
    const chunks: ChunkStorageMetadata[] = (e[3] as unknown[]).map((c) => {
      if (!Array.isArray(c) || c.length !== 2) fail(`expected each chunk of "${fqn}" to be [offsets, sizes]`);
      const offsets = counts(c[0], `chunk offsets of "${fqn}"`);
      const sizes = counts(c[1], `chunk sizes of "${fqn}"`);
      if (offsets.length !== size.length || sizes.length !== size.length) {
        fail(`expected chunks of "${fqn}" to have ${size.length} dims like its size [${size.join(", ")}]`);
      }
      if (offsets.some((o, d) => o + sizes[d]! > size[d]!)) {
        fail(
          `chunk at [${offsets.join(", ")}] of size [${sizes.join(", ")}] lies outside "${fqn}" [${size.join(", ")}]`,
        );
      }
      if (numel(sizes) * DTYPE_BYTES[e[1] as keyof typeof DTYPE_BYTES] > MAX_ITEM_BYTES)
        fail(`chunk at [${offsets.join(", ")}] of "${fqn}" is larger than ${MAX_ITEM_BYTES} bytes`);
      return { offsets, sizes };
    });
    if (!Number.isSafeInteger(numel(size) * DTYPE_BYTES[e[1]]))
      fail(`"${fqn}" of size [${size.join(", ")}] has more bytes than a safe integer counts`);
    tilingBudget -= assertChunksTile(fqn, size, chunks, tilingBudget);
    stateDictMetadata.set(fqn, { type: "tensor", properties: { dtype: e[1] }, size, chunks });
  }

  const plannerData = new Map<string, ObjectPath>();
  if (!Array.isArray(top.plannerData)) fail("expected plannerData to be a list");
  for (const p of top.plannerData as unknown[]) {
    if (!Array.isArray(p) || p.length !== 2 || !Array.isArray(p[1]))
      fail("expected each plannerData entry to be [fqn, path]");
    const fqn = checkFqn(str(p[0], "an fqn"));
    const path = p[1] as unknown[];
    if (path.length === 0 || path.length > MAX_MSGPACK_DEPTH)
      fail(`expected a path of 1 to ${MAX_MSGPACK_DEPTH} steps for "${fqn}", got ${path.length}`);
    for (const step of path) {
      if (typeof step === "string") checkFqn(step);
      else if (isCount(step) && step >= top.plannerData.length)
        fail(`expected list indices below ${top.plannerData.length} in the path of "${fqn}", got ${step}`);
      else if (!isCount(step))
        fail(`expected path steps of "${fqn}" to be keys or indices, got ${show(step)}`);
    }
    plannerData.set(fqn, path as ObjectPath);
  }

  const storageData = new Map<string, StorageInfo>();
  const safePaths = new Set<string>();
  if (!Array.isArray(top.storage)) fail("expected storage to be a list");
  for (const s of top.storage as unknown[]) {
    if (!Array.isArray(s) || (s.length !== 6 && s.length !== 7))
      fail(
        "expected each storage entry to be [fqn, offset, relativePath, fileOffset, length, checksum, itemFormat?]",
      );
    const itemFormat = s.length === 7 ? str(s[6], `the item format of "${s[0]}"`) : undefined;
    if (itemFormat !== undefined && (itemFormat.length > MAX_ITEM_FORMAT_NAME || itemFormat === ""))
      fail(`expected an item format name of 1 to ${MAX_ITEM_FORMAT_NAME} characters for "${s[0]}"`);
    const fqn = str(s[0], "an fqn");
    const entry = stateDictMetadata.get(fqn);
    if (!entry) fail(`storage entry for "${fqn}", which is not in stateDict`);
    const offset = s[1] === null ? null : counts(s[1], `the storage offset of "${fqn}"`);
    const relativePath = str(s[2], `the relative path of "${fqn}"`);
    if (!safePaths.has(relativePath)) {
      assertSafeRelativePath(relativePath);
      safePaths.add(relativePath); // most items share a few files: check each path once
    }
    if (!isCount(s[3]) || !isCount(s[4]))
      fail(`expected byte offset and length of "${fqn}" to be non-negative integers`);
    if (typeof s[5] !== "number" || !Number.isInteger(s[5]) || s[5] < 0 || s[5] > 0xffffffff)
      fail(`expected a 32-bit CRC for "${fqn}"`);
    if (entry.type === "tensor") {
      const chunk = offset && findChunk(entry.chunks, offset);
      if (!chunk) fail(`storage entry for "${fqn}" at [${offset?.join(", ")}] matches none of its chunks`);
      const expected = numel(chunk.sizes) * DTYPE_BYTES[entry.properties.dtype];
      // A framed item (another item format) is longer than its payload; its format checks it.
      if (itemFormat === undefined && s[4] !== expected)
        fail(
          `expected "${fqn}" at [${offset!.join(", ")}] to be stored as ${expected} bytes, metadata says ${s[4]}`,
        );
    } else if (offset !== null) {
      fail(`expected no offset for the value "${fqn}"`);
    } else if (s[4] > MAX_ITEM_BYTES) {
      fail(`expected the value "${fqn}" to be at most ${MAX_ITEM_BYTES} bytes, metadata says ${s[4]}`);
    }
    const info: { -readonly [K in keyof StorageInfo]: StorageInfo[K] } =
      algorithm === "crc32"
        ? { relativePath, offset: s[3], length: s[4], crc32: s[5] }
        : { relativePath, offset: s[3], length: s[4], crc32c: s[5] };
    if (itemFormat !== undefined) info.itemFormat = itemFormat;
    storageData.set(metadataIndexKey({ fqn, offset }), info);
  }
  for (const [fqn, entry] of stateDictMetadata) {
    const keys =
      entry.type === "bytes"
        ? [metadataIndexKey({ fqn, offset: null })]
        : entry.chunks.map((c) => metadataIndexKey({ fqn, offset: c.offsets }));
    if (keys.some((k) => !storageData.has(k))) fail(`"${fqn}" has a chunk with no storage entry`);
  }

  const sm = top.storageMeta;
  if (typeof sm !== "object" || sm === null || Array.isArray(sm)) fail("expected storageMeta to be a map");
  const { checkpointId, saveId } = sm as Record<string, unknown>;
  const storageMeta = {
    ...(typeof checkpointId === "string" ? { checkpointId } : {}),
    ...(typeof saveId === "string" ? { saveId } : {}),
  };
  return { version, stateDictMetadata, plannerData, storageData, storageMeta };
}

/**
 * Checks that every tensor's chunks tile it exactly (no gap, no overlap), within
 * {@link MAX_TILING_COMPARISONS} comparisons in all, as {@link decodeMetadata} does.
 *
 * @param stateDictMetadata - the entries to check.
 * @throws {@link MetadataError} on a gap, an overlap, or too many comparisons.
 */
export function assertChunksTileAll(stateDictMetadata: ReadonlyMap<string, StorageMetadataEntry>): void {
  let budget = MAX_TILING_COMPARISONS;
  for (const [fqn, e] of stateDictMetadata)
    if (e.type === "tensor") budget -= assertChunksTile(fqn, e.size, e.chunks, budget);
}

/** Whether two boxes share at least one element (empty boxes share none). */
function boxesOverlap(a: ChunkStorageMetadata, b: ChunkStorageMetadata): boolean {
  return a.offsets.every((o, d) => {
    const bo = b.offsets[d]!;
    return o < bo + b.sizes[d]! && bo < o + a.sizes[d]! && a.sizes[d]! > 0 && b.sizes[d]! > 0;
  });
}

/**
 * Checks that a tensor's chunks (already inside its bounds) tile it exactly: their volumes add up
 * to its element count and no two overlap, so every element comes from exactly one chunk, as
 * DCP's `_validate_global_plan` checks at save time. Sorted by the first dimension, each chunk is
 * compared only with those starting before it ends there.
 *
 * @returns the comparisons made.
 * @throws {@link MetadataError} on a gap, an overlap, or more than `budget` comparisons.
 */
function assertChunksTile(
  fqn: string,
  size: readonly number[],
  chunks: readonly ChunkStorageMetadata[],
  budget: number,
): number {
  const volume = chunks.reduce((sum, c) => sum + numel(c.sizes), 0);
  if (volume !== numel(size)) {
    fail(
      `the chunks of "${fqn}" [${size.join(", ")}] hold ${volume} elements, expected ${numel(size)} (a gap or an overlap)`,
    );
  }
  // One chunk (in bounds, checked by the caller) holding every element tiles its tensor.
  if (size.length === 0 || chunks.length === 1) return 0;
  const sorted = [...chunks].sort((a, b) => a.offsets[0]! - b.offsets[0]!);
  let comparisons = 0;
  for (let i = 0; i < sorted.length; i++) {
    const a = sorted[i]!;
    const end = a.offsets[0]! + a.sizes[0]!;
    for (let j = i + 1; j < sorted.length && sorted[j]!.offsets[0]! < end; j++) {
      if (++comparisons > budget)
        fail(`checking that the chunks tile their tensors takes over ${MAX_TILING_COMPARISONS} comparisons`);
      if (boxesOverlap(a, sorted[j]!)) {
        fail(
          `chunks of "${fqn}" at [${a.offsets.join(", ")}] and [${sorted[j]!.offsets.join(", ")}] overlap`,
        );
      }
    }
  }
  return comparisons;
}
