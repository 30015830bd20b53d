import { MAX_BYTE_LENGTH } from "#platform";
import { MetadataError } from "../errors.js";
import { numel } from "../model/tensor.js";
import type { ChunkStorageMetadata, StorageMeta } from "../plan/metadata.js";

// The pieces every metadata decoder and `validateMetadata` share: bounds, messages, field readers.

/** Largest stored item (bytes): what one byte array of the runtime can hold (one Node.js buffer), so that a reader can stage it. */
export const MAX_ITEM_BYTES = Math.min(MAX_BYTE_LENGTH, Number.MAX_SAFE_INTEGER);
/**
 * Most pairwise chunk comparisons the tiling check makes for one checkpoint. DCP-style shardings
 * need about one per chunk; a file needing more is refused rather than checked slowly.
 */
export const MAX_TILING_COMPARISONS = 1 << 24;
/** Longest item format name a storage record may carry. */
export const MAX_ITEM_FORMAT_NAME = 64;

/** @throws {@link MetadataError} `MALFORMED_METADATA` with `message`. */
export function fail(message: string): never {
  throw new MetadataError(`Malformed .metadata: ${message}`);
}

export function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/** A short rendering of a decoded value for messages (at most 120 characters). */
export function show(v: unknown): string {
  const text = JSON.stringify(v, (_k, x: unknown) => (typeof x === "bigint" ? `${x}n` : x)) ?? String(v);
  return text.length > 120 ? `${text.slice(0, 117)}...` : text;
}

export function counts(v: unknown, what: string): number[] {
  if (!Array.isArray(v) || !v.every(isCount))
    fail(`expected ${what} to be a list of non-negative integers, got ${show(v)}`);
  return v as number[];
}

export function str(v: unknown, what: string): string {
  if (typeof v !== "string") fail(`expected ${what} to be a string, got ${typeof v}`);
  return v;
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
export function assertChunksTile(
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

/** A map field of the body (not a list, not binary). */
export function map(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v) || v instanceof Uint8Array)
    fail(`expected ${what} to be a map`);
  return v as Record<string, unknown>;
}

/** `storageMeta`: its `checkpointId` and `saveId` where they are strings; other fields are dropped. */
export function decodeStorageMeta(v: unknown): StorageMeta {
  const { checkpointId, saveId } = map(v, "storageMeta");
  return {
    ...(typeof checkpointId === "string" ? { checkpointId } : {}),
    ...(typeof saveId === "string" ? { saveId } : {}),
  };
}

/**
 * {@link assertChunksTile} for chunks held in columns: chunk `k`'s `ndim` offsets and sizes at
 * `first + k · ndim` in `offsets` and `sizes` (already inside the tensor's bounds).
 *
 * @returns the comparisons made.
 * @throws {@link MetadataError} on a gap, an overlap, or more than `budget` comparisons.
 */
export function assertColumnChunksTile(
  fqn: string,
  size: readonly number[],
  offsets: Float64Array,
  sizes: Float64Array,
  first: number,
  count: number,
  budget: number,
): number {
  const ndim = size.length;
  let volume = 0;
  for (let k = 0; k < count; k++) {
    let v = 1;
    for (let d = 0; d < ndim; d++) v *= sizes[first + k * ndim + d]!;
    volume += v;
  }
  if (volume !== numel(size)) {
    fail(
      `the chunks of "${fqn}" [${size.join(", ")}] hold ${volume} elements, expected ${numel(size)} (a gap or an overlap)`,
    );
  }
  if (ndim === 0 || count === 1) return 0;
  const startOf = (k: number) => offsets[first + k * ndim]!;
  let inOrder = true;
  for (let k = 1; k < count && inOrder; k++) inOrder = startOf(k - 1) <= startOf(k);
  const order = inOrder
    ? undefined
    : Array.from({ length: count }, (_, k) => k).sort((a, b) => startOf(a) - startOf(b) || a - b);
  const at = order ? (p: number) => order[p]! : (p: number) => p;
  const overlap = (a: number, b: number) => {
    for (let d = 0; d < ndim; d++) {
      const ao = offsets[first + a * ndim + d]!;
      const as = sizes[first + a * ndim + d]!;
      const bo = offsets[first + b * ndim + d]!;
      const bs = sizes[first + b * ndim + d]!;
      if (!(ao < bo + bs && bo < ao + as && as > 0 && bs > 0)) return false;
    }
    return true;
  };
  const show = (k: number) =>
    Array.from(offsets.subarray(first + k * ndim, first + (k + 1) * ndim)).join(", ");
  let comparisons = 0;
  for (let p = 0; p < count; p++) {
    const a = at(p);
    const end = startOf(a) + sizes[first + a * ndim]!;
    for (let q = p + 1; q < count && startOf(at(q)) < end; q++) {
      if (++comparisons > budget)
        fail(`checking that the chunks tile their tensors takes over ${MAX_TILING_COMPARISONS} comparisons`);
      if (overlap(a, at(q))) fail(`chunks of "${fqn}" at [${show(a)}] and [${show(at(q))}] overlap`);
    }
  }
  return comparisons;
}
