import { MetadataError } from "../errors.js";
import { DTYPE_BYTES, isDType } from "../model/dtype.js";
import { numel } from "../model/geometry.js";
import { MAX_MSGPACK_DEPTH } from "../model/msgpack-bounds.js";
import { type Metadata, metadataIndexKey } from "../plan/metadata.js";
import {
  blockRecordOf,
  chunkAt,
  chunkCount,
  chunkOffsetsAt,
  entrySizeOf,
  type MetadataColumns,
  metadataColumns,
  VALUE_DTYPE,
} from "../plan/metadata-columns.js";
import {
  assertChunksTile,
  assertColumnChunksTile,
  assertSafeRelativePath,
  isCount,
  MAX_ITEM_BYTES,
  MAX_ITEM_FORMAT_NAME,
  MAX_TILING_COMPARISONS,
  show,
} from "./metadata-checks.js";

/** A content hash as `.metadata` records it (`StorageInfo.contentHash`): XXH3-128, 32 lowercase hex digits. */
const CONTENT_HASH = /^[0-9a-f]{32}$/;
/** Longest base checkpoint name (`StorageInfo.baseCheckpoint`, one path segment). */
const MAX_BASE_NAME = 255;

/** The bounds {@link validateMetadata} holds every format's metadata to. */
export interface MetadataLimits {
  /** What the metadata is called in messages (`Malformed {what}: …`). @default ".metadata" */
  readonly what?: string;
  /** Largest stored item (bytes). @default {@link MAX_ITEM_BYTES} */
  readonly maxItemBytes?: number;
  /** Most pairwise chunk comparisons of the tiling check, for the whole checkpoint. @default {@link MAX_TILING_COMPARISONS} */
  readonly maxTilingComparisons?: number;
}

/**
 * Checks a decoded checkpoint's metadata — whatever format it came from — before anything uses
 * it: no `__proto__` key or path step; every tensor of a known dtype, its size and its chunks
 * counts of as many dimensions, its bytes a safe integer, its chunks inside it and tiling it
 * exactly (as DCP's `_validate_global_plan`); every chunk and value with a storage entry at a safe
 * relative path; a raw item (no item format) exactly as long as its chunk, no stored item over
 * `maxItemBytes`, item format names of 1 to 64 characters, running checksums on tensor items only;
 * planner paths of 1 to 64 steps, each a key or a list index below the entry count; content hashes
 * of 32 lowercase hex digits; base checkpoints (`baseCheckpoint`) of one safe path segment.
 *
 * @param metadata - raw metadata from a format's decoder.
 * @param limits - see {@link MetadataLimits}.
 * @returns `metadata`, unchanged.
 * @throws {@link MetadataError} `MALFORMED_METADATA` saying what was expected and found, or
 * `UNSAFE_PATH` for a data file path escaping the checkpoint folder.
 */
export function validateMetadata(metadata: Metadata, limits: MetadataLimits = {}): Metadata {
  const what = limits.what ?? ".metadata";
  const fail = (message: string): never => {
    throw new MetadataError(`Malformed ${what}: ${message}`);
  };
  const key = (k: unknown, where: string): string => {
    if (typeof k !== "string") fail(`expected ${where} to be strings, got ${show(k)}`);
    if (k === "__proto__") fail(`expected ${where} other than "__proto__"`);
    return k as string;
  };
  const { stateDictMetadata: entries, plannerData } = metadata;
  for (const fqn of metadata.unsupportedDtypes?.keys() ?? []) key(fqn, "state-dict keys");
  const columns = metadataColumns(metadata);
  if (columns) validateColumns(columns, limits, fail, key);
  else validateMaps(metadata, limits, fail, key);
  // List indices above the entry count would make a loader build huge sparse lists.
  const indices = Math.max(entries.size, plannerData.size);
  for (const [fqn, path] of plannerData) {
    key(fqn, "planner data keys");
    if (!Array.isArray(path) || path.length === 0 || path.length > MAX_MSGPACK_DEPTH)
      fail(
        `expected a path of 1 to ${MAX_MSGPACK_DEPTH} steps for "${fqn}", got ${Array.isArray(path) ? path.length : show(path)}`,
      );
    for (const step of path) {
      if (typeof step === "string") key(step, `path steps of "${fqn}"`);
      else if (!isCount(step))
        fail(`expected path steps of "${fqn}" to be keys or indices, got ${show(step)}`);
      else if (step >= indices)
        fail(`expected list indices below ${indices} in the path of "${fqn}", got ${step}`);
    }
  }
  return metadata;
}

/** A message's failure, as {@link validateMetadata} raises it. */
type Fail = (message: string) => never;
/** A key's check, as {@link validateMetadata} makes it. */
type Key = (k: unknown, where: string) => string;

/** One-segment base checkpoint names (`StorageInfo.baseCheckpoint`). @throws `UNSAFE_PATH`. */
function assertSafeBase(base: unknown): void {
  // One path segment: a sibling of this checkpoint, never a path that climbs out of its parent.
  if (
    typeof base !== "string" ||
    base.length > MAX_BASE_NAME ||
    !/^[^/\\\0]+$/.test(base) ||
    base === "." ||
    base === ".."
  )
    throw new MetadataError(
      `Unsafe path in .metadata: expected a base checkpoint's name (one path segment, at most ${MAX_BASE_NAME} characters), got ${show(base)}`,
      { code: "UNSAFE_PATH" },
    );
}

/** {@link validateMetadata}'s entry and storage checks on a metadata of maps. */
function validateMaps(metadata: Metadata, limits: MetadataLimits, fail: Fail, key: Key): void {
  const maxItemBytes = limits.maxItemBytes ?? MAX_ITEM_BYTES;
  const counts = (v: unknown, where: string, ndim: number): readonly number[] => {
    if (!Array.isArray(v) || v.length !== ndim || !v.every(isCount))
      fail(`expected ${where} to be ${ndim} non-negative integers, got ${show(v)}`);
    return v as number[];
  };
  const { stateDictMetadata: entries, storageData } = metadata;
  let tilingBudget = limits.maxTilingComparisons ?? MAX_TILING_COMPARISONS;
  for (const [fqn, entry] of entries) {
    key(fqn, "state-dict keys");
    if (entry.type === "bytes") {
      const info = storageData.get(metadataIndexKey({ fqn, offset: null }));
      if (!info) fail(`"${fqn}" has a chunk with no storage entry`);
      if (info!.length > maxItemBytes)
        fail(
          `expected the value "${fqn}" to be at most ${maxItemBytes} bytes, metadata says ${info!.length}`,
        );
      if (info!.checksumBlocks) fail(`expected no running checksums for the value "${fqn}"`);
      continue;
    }
    if (entry.type !== "tensor" || !isDType(entry.properties?.dtype))
      fail(`expected a tensor or a value for "${fqn}", got ${show(entry)}`);
    const { dtype } = entry.properties;
    if (!Array.isArray(entry.size) || !entry.size.every(isCount) || entry.size.length > MAX_MSGPACK_DEPTH)
      fail(`expected the size of "${fqn}" to be at most ${MAX_MSGPACK_DEPTH} non-negative integers`);
    const size = entry.size;
    if (!Number.isSafeInteger(numel(size) * DTYPE_BYTES[dtype]))
      fail(`"${fqn}" of size [${size.join(", ")}] has more bytes than a safe integer counts`);
    if (!Array.isArray(entry.chunks)) fail(`expected a chunk list for "${fqn}"`);
    for (const c of entry.chunks) {
      const offsets = counts(c.offsets, `chunk offsets of "${fqn}"`, size.length);
      const sizes = counts(c.sizes, `chunk sizes of "${fqn}"`, size.length);
      if (offsets.some((o, d) => o + sizes[d]! > size[d]!))
        fail(
          `chunk at [${offsets.join(", ")}] of size [${sizes.join(", ")}] lies outside "${fqn}" [${size.join(", ")}]`,
        );
      const info = storageData.get(metadataIndexKey({ fqn, offset: offsets }));
      if (!info) fail(`"${fqn}" has a chunk with no storage entry`);
      const expected = numel(sizes) * DTYPE_BYTES[dtype];
      // A framed item (another item format) is longer than its payload; its format checks it.
      if (info!.itemFormat === undefined && info!.length !== expected)
        fail(
          `expected "${fqn}" at [${offsets.join(", ")}] to be stored as ${expected} bytes, metadata says ${info!.length}`,
        );
      if (info!.length > maxItemBytes)
        fail(
          `expected "${fqn}" at [${offsets.join(", ")}] to be stored in at most ${maxItemBytes} bytes, metadata says ${info!.length}`,
        );
    }
    tilingBudget -= assertChunksTile(fqn, size, entry.chunks, tilingBudget);
  }
  const safePaths = new Set<string>();
  const safeBases = new Set<string>();
  for (const info of storageData.values()) {
    if (!isCount(info.offset) || !isCount(info.length))
      fail(
        `expected byte offsets and lengths to be non-negative integers, got ${info.offset}+${info.length}`,
      );
    const f = info.itemFormat;
    if (f !== undefined && (typeof f !== "string" || f.length === 0 || f.length > MAX_ITEM_FORMAT_NAME))
      fail(`expected an item format name of 1 to ${MAX_ITEM_FORMAT_NAME} characters, got ${show(f)}`);
    if (!safePaths.has(info.relativePath)) {
      assertSafeRelativePath(info.relativePath);
      safePaths.add(info.relativePath); // most items share a few files: each path is checked once
    }
    if (
      info.contentHash !== undefined &&
      !(typeof info.contentHash === "string" && CONTENT_HASH.test(info.contentHash))
    )
      fail(`expected a content hash of 32 lowercase hex digits, got ${show(info.contentHash)}`);
    const base = info.baseCheckpoint;
    if (base !== undefined && !safeBases.has(base)) {
      assertSafeBase(base);
      safeBases.add(base);
    }
  }
}

/** {@link validateMetadata}'s entry and storage checks on a columnar metadata (the same checks, read from columns). */
function validateColumns(c: MetadataColumns, limits: MetadataLimits, fail: Fail, key: Key): void {
  const maxItemBytes = limits.maxItemBytes ?? MAX_ITEM_BYTES;
  let tilingBudget = limits.maxTilingComparisons ?? MAX_TILING_COMPARISONS;
  const s = c.storage;
  const { chunkOffsets: offsets, chunkSizes: sizes } = c;
  const blockOf = (record: number) => (s && s.blockBytes > 0 ? blockRecordOf(s, record) : undefined);
  for (let e = 0; e < c.fqns.length; e++) {
    const fqn = key(c.fqns[e], "state-dict keys");
    const record = c.entryRecord[e]!;
    if (c.entryDtype[e] === VALUE_DTYPE) {
      if (!s) fail(`"${fqn}" has a chunk with no storage entry`);
      if (s!.length[record]! > maxItemBytes)
        fail(
          `expected the value "${fqn}" to be at most ${maxItemBytes} bytes, metadata says ${s!.length[record]}`,
        );
      if (blockOf(record) !== undefined) fail(`expected no running checksums for the value "${fqn}"`);
      continue;
    }
    const dtype = c.dtypes[c.entryDtype[e]!];
    if (!isDType(dtype)) fail(`expected a tensor or a value for "${fqn}", got ${show(dtype)}`);
    const size = entrySizeOf(c, e);
    if (!size.every(isCount) || size.length > MAX_MSGPACK_DEPTH)
      fail(`expected the size of "${fqn}" to be at most ${MAX_MSGPACK_DEPTH} non-negative integers`);
    const elementBytes = DTYPE_BYTES[dtype!];
    if (!Number.isSafeInteger(numel(size) * elementBytes))
      fail(`"${fqn}" of size [${size.join(", ")}] has more bytes than a safe integer counts`);
    const ndim = size.length;
    const first = c.entryChunkDim[e]!;
    const count = chunkCount(c, e);
    for (let k = 0; k < count; k++) {
      const at = first + k * ndim;
      let elements = 1;
      for (let d = 0; d < ndim; d++) {
        const o = offsets[at + d]!;
        const z = sizes[at + d]!;
        if (!isCount(o) || !isCount(z))
          fail(
            `expected chunk offsets and sizes of "${fqn}" to be ${ndim} non-negative integers, got ${o} and ${z}`,
          );
        if (o + z > size[d]!) {
          const chunk = chunkAt(c, e, k);
          fail(
            `chunk at [${chunk.offsets.join(", ")}] of size [${chunk.sizes.join(", ")}] lies outside "${fqn}" [${size.join(", ")}]`,
          );
        }
        elements *= z;
      }
      if (!s) fail(`"${fqn}" has a chunk with no storage entry`);
      const length = s!.length[record + k]!;
      const expected = elements * elementBytes;
      // A framed item (another item format) is longer than its payload; its format checks it.
      if (!s!.itemFormats.has(record + k) && length !== expected)
        fail(
          `expected "${fqn}" at [${chunkOffsetsAt(c, e, k).join(", ")}] to be stored as ${expected} bytes, metadata says ${length}`,
        );
      if (length > maxItemBytes)
        fail(
          `expected "${fqn}" at [${chunkOffsetsAt(c, e, k).join(", ")}] to be stored in at most ${maxItemBytes} bytes, metadata says ${length}`,
        );
    }
    tilingBudget -= assertColumnChunksTile(fqn, size, offsets, sizes, first, count, tilingBudget);
  }
  if (!s) return;
  const usedFiles = new Uint8Array(s.files.length);
  const usedBases = new Uint8Array(s.bases.length + 1);
  for (let r = 0; r < c.records; r++) {
    if (!isCount(s.offset[r]) || !isCount(s.length[r]))
      fail(
        `expected byte offsets and lengths to be non-negative integers, got ${s.offset[r]}+${s.length[r]}`,
      );
    usedFiles[s.file[r]!] = 1;
    if (s.base) usedBases[s.base[r]!] = 1;
  }
  for (const f of s.itemFormats.values())
    if (typeof f !== "string" || f.length === 0 || f.length > MAX_ITEM_FORMAT_NAME)
      fail(`expected an item format name of 1 to ${MAX_ITEM_FORMAT_NAME} characters, got ${show(f)}`);
  for (let f = 0; f < s.files.length; f++) if (usedFiles[f] === 1) assertSafeRelativePath(s.files[f]!);
  for (let b = 1; b < usedBases.length; b++) if (usedBases[b] === 1) assertSafeBase(s.bases[b - 1]);
}
