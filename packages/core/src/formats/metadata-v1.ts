import { isDType } from "../model/dtype.js";
import { findChunk } from "../model/geometry.js";
import type { ObjectPath } from "../model/state-dict.js";
import {
  type ChunkStorageMetadata,
  type Metadata,
  metadataIndexKey,
  type StorageInfo,
  type StorageMetadataEntry,
} from "../plan/metadata.js";
import { counts, decodeStorageMeta, fail, isCount, show, str } from "./metadata-checks.js";

/**
 * Decodes the body of a `.metadata` file of layout version 1 — records as arrays: `stateDict`
 * `[fqn, dtype, size, chunks]`, `plannerData` `[fqn, path]`, `storage`
 * `[fqn, offsets, relativePath, offset, length, checksum, itemFormat?]` (docs/format.md) — after
 * its trailer, format and version were checked, into raw metadata (`validateMetadata` checks it).
 *
 * @param top - the decoded msgpack map.
 * @throws {@link MetadataError} as `decodeMetadata`.
 */
export function decodeMetadataV1(top: Record<string, unknown>): Metadata {
  const version = str(top.version, "version");

  const stateDictMetadata = new Map<string, StorageMetadataEntry>();
  if (!Array.isArray(top.stateDict)) fail("expected stateDict to be a list");
  for (const e of top.stateDict as unknown[]) {
    if (!Array.isArray(e) || e.length !== 4)
      fail("expected each stateDict entry to be [fqn, dtype, size, chunks]");
    const fqn = str(e[0], "an fqn");
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
      return {
        offsets: counts(c[0], `chunk offsets of "${fqn}"`),
        sizes: counts(c[1], `chunk sizes of "${fqn}"`),
      };
    });
    stateDictMetadata.set(fqn, { type: "tensor", properties: { dtype: e[1] }, size, chunks });
  }

  const plannerData = new Map<string, ObjectPath>();
  if (!Array.isArray(top.plannerData)) fail("expected plannerData to be a list");
  for (const p of top.plannerData as unknown[]) {
    if (!Array.isArray(p) || p.length !== 2 || !Array.isArray(p[1]))
      fail("expected each plannerData entry to be [fqn, path]");
    plannerData.set(str(p[0], "an fqn"), p[1] as ObjectPath);
  }

  const storageData = new Map<string, StorageInfo>();
  if (!Array.isArray(top.storage)) fail("expected storage to be a list");
  for (const s of top.storage as unknown[]) {
    if (!Array.isArray(s) || (s.length !== 6 && s.length !== 7))
      fail(
        "expected each storage entry to be [fqn, offset, relativePath, fileOffset, length, checksum, itemFormat?]",
      );
    const itemFormat = s.length === 7 ? str(s[6], `the item format of "${s[0]}"`) : undefined;
    const fqn = str(s[0], "an fqn");
    const entry = stateDictMetadata.get(fqn);
    if (!entry) fail(`storage entry for "${fqn}", which is not in stateDict`);
    const offset = s[1] === null ? null : counts(s[1], `the storage offset of "${fqn}"`);
    const relativePath = str(s[2], `the relative path of "${fqn}"`);
    if (!isCount(s[3]) || !isCount(s[4]))
      fail(`expected byte offset and length of "${fqn}" to be non-negative integers`);
    if (typeof s[5] !== "number" || !Number.isInteger(s[5]) || s[5] < 0 || s[5] > 0xffffffff)
      fail(`expected a 32-bit CRC for "${fqn}"`);
    if (entry.type === "tensor" ? !(offset && findChunk(entry.chunks, offset)) : offset !== null)
      fail(`storage entry for "${fqn}" at [${offset?.join(", ")}] matches none of its chunks`);
    storageData.set(metadataIndexKey({ fqn, offset }), {
      relativePath,
      offset: s[3],
      length: s[4],
      crc32c: s[5], // version 1 recorded CRC-32C
      ...(itemFormat !== undefined ? { itemFormat } : {}),
    });
  }
  return {
    version,
    stateDictMetadata,
    plannerData,
    storageData,
    storageMeta: decodeStorageMeta(top.storageMeta),
  };
}
