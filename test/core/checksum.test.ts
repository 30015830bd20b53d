import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { crc32 as zlibCrc32 } from "node:zlib";
import { emptyTensor, load, save } from "@dcpjs/core";
import { METADATA_FILE, metadataIndexKey, type StorageInfo } from "@dcpjs/core/extend";
import { copyCheckpoint, verifyCheckpoint } from "@dcpjs/core/ops";
import {
  decodeMetadata,
  encodeMetadata,
  runningChecksums,
  runningChecksumsOnWorker,
} from "@dcpjs/core/testing";
import { decode, encode } from "@msgpack/msgpack";
import { crc32c } from "@node-rs/crc32";
import { describe, expect, it } from "vitest";
import { flipStoredBits } from "../support/damage.js";
import { sealMetadata } from "../support/seal-metadata.js";
import { randomTensor, sameTensor } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

const state = () => ({
  w: randomTensor("float32", [64, 33], 1),
  b: randomTensor("bfloat16", [17], 2),
  step: 12,
});
const target = () => ({ w: emptyTensor("float32", [64, 33]), b: emptyTensor("bfloat16", [17]), step: 0 });

/** Every storage entry of a checkpoint, with the bytes of its item. */
async function items(dir: string): Promise<{ info: StorageInfo; bytes: Buffer }[]> {
  const md = decodeMetadata(await readFile(join(dir, METADATA_FILE)));
  return Promise.all(
    [...md.storageData.values()].map(async (info) => ({
      info,
      bytes: (await readFile(join(dir, info.relativePath))).subarray(info.offset, info.offset + info.length),
    })),
  );
}

/**
 * Rewrites a checkpoint's `.metadata` as dcpjs wrote it before format version 2: formatVersion 1,
 * records as arrays, no `checksum` field, the CRC-32C of each item in its storage record.
 */
async function downgradeToVersion1(dir: string): Promise<void> {
  const md = decodeMetadata(await readFile(join(dir, METADATA_FILE)));
  const storage: unknown[] = [];
  const stateDict: unknown[] = [];
  for (const [fqn, e] of md.stateDictMetadata) {
    stateDict.push(
      e.type === "bytes"
        ? [fqn, null, null, null]
        : [fqn, e.properties.dtype, e.size, e.chunks.map((c) => [c.offsets, c.sizes])],
    );
    for (const offset of e.type === "bytes" ? [null] : e.chunks.map((c) => c.offsets)) {
      const info = md.storageData.get(metadataIndexKey({ fqn, offset }))!;
      const data = await readFile(join(dir, info.relativePath));
      const crc = crc32c(data.subarray(info.offset, info.offset + info.length));
      storage.push([fqn, offset, info.relativePath, info.offset, info.length, crc]);
    }
  }
  const v1 = {
    format: "dcpjs.metadata",
    formatVersion: 1,
    version: md.version,
    stateDict,
    plannerData: [...md.plannerData],
    storage,
    storageMeta: { ...md.storageMeta },
  };
  await writeFile(join(dir, METADATA_FILE), sealMetadata(encode(v1)));
}

/** Flips one bit inside the tensor `w`'s stored bytes. */
async function damageW(dir: string): Promise<void> {
  await flipStoredBits(dir, "w\u00000,0", 100, 0x08);
}

describe("item checksums: CRC-32 written, CRC-32 and CRC-32C verified", () => {
  it("a save records every item's CRC-32 (zlib's, checked against node:zlib) under formatVersion 2", async () => {
    const dir = await tempDir();
    await save(state(), { checkpointId: dir });
    const bytes = await readFile(join(dir, METADATA_FILE));
    const raw = decode(bytes.subarray(0, bytes.byteLength - 4)) as Record<string, unknown>;
    expect(raw).toMatchObject({ formatVersion: 2, checksum: "crc32" });
    const all = await items(dir);
    expect(all).toHaveLength(3);
    for (const { info, bytes } of all) {
      expect(info.crc32c).toBeUndefined();
      expect(info.crc32).toBe(zlibCrc32(bytes));
    }
  });

  it("running checksums: one per block, the last the whole CRC, each a start for the next blocks; equal on a worker", async () => {
    const bytes = new Uint8Array(new SharedArrayBuffer(10_000));
    bytes.set(randomTensor("uint8", [10_000], 4).data as Uint8Array);
    for (const algorithm of ["crc32", "crc32c"] as const) {
      const running = runningChecksums(algorithm, bytes, 4096);
      expect(running).toHaveLength(3);
      const whole = algorithm === "crc32" ? zlibCrc32(bytes) : crc32c(Buffer.from(bytes.buffer));
      expect(running[2]).toBe(whole);
      // Blocks 1–2 alone, started from block 0's running value, end where the whole item does.
      expect(runningChecksums(algorithm, bytes.subarray(4096), 4096, running[0])).toEqual(running.slice(1));
      expect(runningChecksums(algorithm, bytes, Number.POSITIVE_INFINITY)).toEqual([whole]);
      expect(await runningChecksumsOnWorker(algorithm, bytes, 4096)).toEqual(running);
    }
  });

  it("a formatVersion 1 checkpoint (CRC-32C) loads, verifies and copies; a flipped bit names its CRC-32C", async () => {
    const dir = await tempDir();
    const saved = state();
    await save(saved, { checkpointId: dir });
    await downgradeToVersion1(dir);
    for (const { info, bytes } of await items(dir)) {
      expect(info.crc32).toBeUndefined();
      expect(info.crc32c).toBe(crc32c(bytes));
    }
    const sd = target();
    await load(sd, { checkpointId: dir });
    expect(sameTensor(sd.w, saved.w) && sameTensor(sd.b, saved.b) && sd.step === 12).toBe(true);
    expect(await verifyCheckpoint(dir)).toMatchObject({ checked: 3, damaged: [], unchecksummed: 0 });
    const copy = await tempDir();
    await copyCheckpoint(dir, copy);
    // cp copies the committed .metadata as it is: the copy keeps its version and CRC-32Cs.
    expect(await readFile(join(copy, METADATA_FILE))).toEqual(await readFile(join(dir, METADATA_FILE)));

    await damageW(dir);
    const failure = await load(target(), { checkpointId: dir }).then(
      () => undefined,
      (e: unknown) => e as { failures?: { error: Error & { code: string } }[] } & Error & { code?: string },
    );
    const root = failure?.failures?.[0]?.error ?? failure;
    expect(root).toMatchObject({ code: "CHECKSUM_MISMATCH", fqn: "w", algorithm: "CRC-32C" });
    expect(root?.message).toMatch(/^CRC-32C mismatch for "w" in __0_0\.[0-9a-f]{12}\.distcp @ \d+\+8448/);
    await expect(copyCheckpoint(dir, await tempDir())).rejects.toThrow(/"w" .* to match its CRC-32C/);
  });

  it("a flipped bit in a current checkpoint names its CRC-32, in load, verify and cp", async () => {
    const dir = await tempDir();
    await save(state(), { checkpointId: dir });
    await damageW(dir);
    const report = await verifyCheckpoint(dir);
    expect(report.damaged).toHaveLength(1);
    expect(report.damaged[0]).toMatchObject({ fqn: "w", code: "CHECKSUM_MISMATCH" });
    expect(report.damaged[0]!.message).toMatch(/^CRC-32 mismatch for "w"/);
    await expect(copyCheckpoint(dir, await tempDir())).rejects.toThrow(/"w" .* to match its CRC-32;/);
  });

  it("refuses a formatVersion 2 file naming an unknown checksum, and a newer formatVersion", async () => {
    const dir = await tempDir();
    await save(state(), { checkpointId: dir });
    const bytes = await readFile(join(dir, METADATA_FILE));
    const raw = decode(bytes.subarray(0, bytes.byteLength - 4)) as Record<string, unknown>;
    expect(() => decodeMetadata(sealMetadata(encode({ ...raw, checksum: "md5" })))).toThrow(
      /expected checksum to be one of crc32, crc32c, got "md5"/,
    );
    // 3 is the layout of checkpoints with references (incremental saves): 4 is the newer one.
    expect(() => decodeMetadata(sealMetadata(encode({ ...raw, formatVersion: 4 })))).toThrow(
      /expected formatVersion 1, 2 or 3, got 4 \(written by a newer dcpjs\?\)/,
    );
  });

  it("refuses to encode items that record different algorithms (one name covers the file)", async () => {
    const dir = await tempDir();
    await save(state(), { checkpointId: dir });
    const md = decodeMetadata(await readFile(join(dir, METADATA_FILE)));
    const storageData = new Map(md.storageData);
    const [key, info] = [...storageData][0]!;
    storageData.set(key, {
      relativePath: info.relativePath,
      offset: info.offset,
      length: info.length,
      crc32c: 1,
    });
    expect(() => encodeMetadata({ ...md, storageData })).toThrow(
      /^Expected every item of a dcpjs checkpoint to record one checksum algorithm \(crc32c?\), "\w+" has crc32c?$/,
    );
  });
});
