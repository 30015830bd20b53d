import { decode, encode } from "@msgpack/msgpack";
import { crc32c } from "@node-rs/crc32";
import { DTYPE_BYTES, isDType } from "./dtype.js";
import { MetadataError } from "./errors.js";
import {
  type ChunkStorageMetadata,
  type Metadata,
  metadataIndexKey,
  type StorageInfo,
  type StorageMetadataEntry,
} from "./metadata.js";
import type { ObjectPath } from "./state-dict.js";
import { numel } from "./tensor.js";

/** The `format` field of every dcpjs `.metadata` file. */
export const METADATA_FORMAT = "dcpjs.metadata";
/** The metadata layout version this build writes and reads (see docs/format.md). */
export const METADATA_FORMAT_VERSION = 1;
/** Bytes of the CRC-32C trailer after the msgpack body. */
const TRAILER_BYTES = 4;

type EncodedEntry = [
  fqn: string,
  dtype: string | null,
  size: number[] | null,
  chunks: [number[], number[]][] | null,
];
type EncodedStorage = [
  fqn: string,
  offset: number[] | null,
  relativePath: string,
  fileOffset: number,
  length: number,
  crc32c: number,
];

/**
 * Encodes a checkpoint's metadata as the bytes of `.metadata`: a msgpack map (layout in
 * docs/format.md) followed by the CRC-32C of that map, 4 bytes little-endian.
 *
 * @param metadata - the metadata, with storage data filled in.
 * @returns the file's bytes.
 */
export function encodeMetadata(metadata: Metadata): Uint8Array {
  const stateDict: EncodedEntry[] = [];
  for (const [fqn, e] of metadata.stateDictMetadata) {
    stateDict.push(
      e.type === "bytes"
        ? [fqn, null, null, null]
        : [fqn, e.properties.dtype, [...e.size], e.chunks.map((c) => [[...c.offsets], [...c.sizes]])],
    );
  }
  const storage: EncodedStorage[] = [];
  for (const [fqn, e] of metadata.stateDictMetadata) {
    const offsets = e.type === "bytes" ? [null] : e.chunks.map((c) => [...c.offsets]);
    for (const offset of offsets) {
      const info = metadata.storageData.get(metadataIndexKey({ fqn, offset }));
      if (info) storage.push([fqn, offset, info.relativePath, info.offset, info.length, info.crc32c]);
    }
  }
  const body = encode({
    format: METADATA_FORMAT,
    formatVersion: METADATA_FORMAT_VERSION,
    version: metadata.version,
    stateDict,
    plannerData: [...metadata.plannerData].map(([fqn, path]) => [fqn, [...path]]),
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

function counts(v: unknown, what: string): number[] {
  if (!Array.isArray(v) || !v.every(isCount))
    fail(`expected ${what} to be a list of non-negative integers, got ${JSON.stringify(v)}`);
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
      `Expected data file paths inside the checkpoint folder (relative, no "." or ".." segments), found ${JSON.stringify(relativePath)}`,
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
  let raw: unknown;
  try {
    raw = decode(body);
  } catch (cause) {
    throw new MetadataError("Malformed .metadata: the body is not valid msgpack", { cause });
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) fail("expected a map at the top level");
  const top = raw as Record<string, unknown>;
  if (top.format !== METADATA_FORMAT)
    fail(`expected format "${METADATA_FORMAT}", got ${JSON.stringify(top.format)}`);
  if (top.formatVersion !== METADATA_FORMAT_VERSION) {
    fail(
      `expected formatVersion ${METADATA_FORMAT_VERSION}, got ${JSON.stringify(top.formatVersion)} (written by another dcpjs version?)`,
    );
  }
  const version = str(top.version, "version");

  const stateDictMetadata = new Map<string, StorageMetadataEntry>();
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
    if (!isDType(e[1])) fail(`expected a dtype for "${fqn}", got ${JSON.stringify(e[1])}`);
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
      return { offsets, sizes };
    });
    stateDictMetadata.set(fqn, { type: "tensor", properties: { dtype: e[1] }, size, chunks });
  }

  const plannerData = new Map<string, ObjectPath>();
  if (!Array.isArray(top.plannerData)) fail("expected plannerData to be a list");
  for (const p of top.plannerData as unknown[]) {
    if (!Array.isArray(p) || p.length !== 2 || !Array.isArray(p[1]))
      fail("expected each plannerData entry to be [fqn, path]");
    const fqn = checkFqn(str(p[0], "an fqn"));
    const path = p[1] as unknown[];
    if (path.length === 0) fail(`expected a non-empty path for "${fqn}"`);
    for (const step of path) {
      if (typeof step === "string") checkFqn(step);
      else if (!isCount(step))
        fail(`expected path steps of "${fqn}" to be keys or indices, got ${JSON.stringify(step)}`);
    }
    plannerData.set(fqn, path as ObjectPath);
  }

  const storageData = new Map<string, StorageInfo>();
  if (!Array.isArray(top.storage)) fail("expected storage to be a list");
  for (const s of top.storage as unknown[]) {
    if (!Array.isArray(s) || s.length !== 6)
      fail("expected each storage entry to be [fqn, offset, relativePath, fileOffset, length, crc32c]");
    const fqn = str(s[0], "an fqn");
    const entry = stateDictMetadata.get(fqn);
    if (!entry) fail(`storage entry for "${fqn}", which is not in stateDict`);
    const offset = s[1] === null ? null : counts(s[1], `the storage offset of "${fqn}"`);
    const relativePath = str(s[2], `the relative path of "${fqn}"`);
    assertSafeRelativePath(relativePath);
    if (!isCount(s[3]) || !isCount(s[4]))
      fail(`expected byte offset and length of "${fqn}" to be non-negative integers`);
    if (typeof s[5] !== "number" || !Number.isInteger(s[5]) || s[5] < 0 || s[5] > 0xffffffff)
      fail(`expected a 32-bit CRC for "${fqn}"`);
    if (entry.type === "tensor") {
      const chunk =
        offset &&
        entry.chunks.find(
          (c) => c.offsets.join(",") === offset.join(",") && c.offsets.length === offset.length,
        );
      if (!chunk) fail(`storage entry for "${fqn}" at [${offset?.join(", ")}] matches none of its chunks`);
      const expected = numel(chunk.sizes) * DTYPE_BYTES[entry.properties.dtype];
      if (s[4] !== expected)
        fail(
          `expected "${fqn}" at [${offset!.join(", ")}] to be stored as ${expected} bytes, metadata says ${s[4]}`,
        );
    } else if (offset !== null) {
      fail(`expected no offset for the value "${fqn}"`);
    }
    storageData.set(metadataIndexKey({ fqn, offset }), {
      relativePath,
      offset: s[3],
      length: s[4],
      crc32c: s[5],
    });
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
