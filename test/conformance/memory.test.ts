import type { Metadata } from "@dcpjs/core";
import {
  ChecksumMismatchError,
  emptyTensor,
  FileSystemReader,
  FileSystemWriter,
  load,
  save,
  shardTensor,
  tensorBytes,
} from "@dcpjs/core";
import {
  type CheckpointFormat,
  checkpointFormats,
  type ItemFormat,
  registerCheckpointFormat,
  registerItemFormat,
  registerStorageBackend,
  unregisterStorageBackend,
} from "@dcpjs/core/extend";
import { crc32c } from "@node-rs/crc32";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryFileSystem, memoryBackend } from "../support/memory-file-system.js";
import { allRanks } from "../support/ranks.js";
import { randomTensor, sameTensor, seededState, seededTarget, whichSeed } from "../support/tensors.js";
import { describeFileSystemConformance } from "./filesystem-conformance.js";

const fs = new MemoryFileSystem();
let folders = 0;

describeFileSystemConformance(
  "an in-memory backend (test/support/memory-file-system.ts)",
  () => ({
    fs,
    root: async () => `mem://conformance/${folders++}`,
  }),
  { rmMissingThrows: false },
);

describe("the storage registry", () => {
  beforeAll(() => registerStorageBackend(memoryBackend(fs)));
  afterAll(() => unregisterStorageBackend("mem"));

  it("routes a registered scheme to its backend in save and load", async () => {
    await save(seededState(3), { checkpointId: "mem://registry/step-1" });
    expect([...fs.files.keys()].some((k) => k === "mem://registry/step-1/.metadata")).toBe(true);
    const sd = seededTarget();
    await load(sd, { checkpointId: "mem://registry/step-1" });
    expect(whichSeed(sd, [3])).toBe(3);
  });

  it("refuses a scheme nobody registered, naming the package that provides a known one", async () => {
    await expect(save(seededState(1), { checkpointId: "gs://bucket/x" })).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
      message: expect.stringMatching(/gs:\/\/ checkpoint ids .* found none; registered: mem, local/),
    });
    // This file does not import @dcpjs/s3, so s3:// is not registered here.
    await expect(load(seededTarget(), { checkpointId: "s3://bucket/x" })).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
      message: expect.stringMatching(/install @dcpjs\/s3 and import it once/),
    });
  });
});

describe("the item-format seam", () => {
  /** A toy framing: every byte XORed with 0x5a, then its CRC-32C in the metadata. */
  const XOR_FORMAT: ItemFormat = {
    name: "xor-5a",
    zeroCopy: false,
    frame: (_item, payload) => {
      const framed = payload.map((b) => b ^ 0x5a);
      return { parts: [framed], info: { crc32c: crc32c(framed), itemFormat: "xor-5a" } };
    },
    unframe: (stored, info, _expect, fqn, where) => {
      if (crc32c(stored) !== info.crc32c)
        throw new ChecksumMismatchError(fqn, info.crc32c!, crc32c(stored), where);
      return stored.map((b) => b ^ 0x5a);
    },
  };

  it("a format registered by name frames on write and unframes and verifies on read, reshard included", async () => {
    registerItemFormat(XOR_FORMAT);
    const path = "mem://formats/xor";
    const full = randomTensor("float32", [12, 8], 4);
    await allRanks(2, (pg) =>
      save(
        { w: shardTensor(full, { rank: pg.rank, worldSize: pg.size }), step: 7 },
        { storageWriter: new FileSystemWriter({ path, fs, format: "xor-5a" }), processGroup: pg },
      ),
    );
    // The stored bytes are framed, not raw.
    const data = [...fs.files].find(([k]) => k.startsWith(path) && k.endsWith(".distcp"))![1].bytes;
    expect(Buffer.from(data).includes(Buffer.from(tensorBytes(full).subarray(0, 64)))).toBe(false);
    const sd = { w: emptyTensor("float32", [12, 8]), step: 0 };
    await load(sd, { storageReader: new FileSystemReader({ path, fs }) });
    expect(sameTensor(sd.w, full)).toBe(true);
    expect(sd.step).toBe(7);
    // A flipped stored byte is found by the format's own check, naming the fqn.
    for (const [k, f] of fs.files) if (k.startsWith(path) && k.endsWith(".distcp")) f.bytes[3]! ^= 1;
    await expect(load(sd, { storageReader: new FileSystemReader({ path, fs }) })).rejects.toMatchObject({
      failures: [expect.objectContaining({ code: "CHECKSUM_MISMATCH" })],
    });
  });

  it("a writer naming an unregistered format is refused with INVALID_ARGUMENT", () => {
    expect(() => new FileSystemWriter({ path: "mem://x", fs, format: "nope" })).toThrow(
      /Expected format to be one of dcpjs, torch(, [\w-]+)*, got "nope"/,
    );
  });
});

describe("the checkpoint-format seam", () => {
  /** A toy item framing: every byte XORed with 0xa5, its CRC-32C in the metadata. */
  const TOY_ITEMS: ItemFormat = {
    name: "toy-items",
    zeroCopy: false,
    frame: (_item, payload) => {
      const framed = payload.map((b) => b ^ 0xa5);
      return { parts: [framed], info: { crc32c: crc32c(framed), itemFormat: "toy-items" } };
    },
    unframe: (stored, info, _expect, fqn, where) => {
      if (crc32c(stored) !== info.crc32c)
        throw new ChecksumMismatchError(fqn, info.crc32c!, crc32c(stored), where);
      return stored.map((b) => b ^ 0xa5);
    },
  };
  /** A toy metadata encoding: a magic line, then the metadata as JSON (maps as entry lists). */
  const MAGIC = new TextEncoder().encode("TOYCKPT1\n");
  let decoded = 0;
  const TOY: CheckpointFormat = {
    name: "toy",
    itemFormat: "toy-items",
    recognizes: (bytes) => MAGIC.every((b, i) => bytes[i] === b),
    encodeMetadata: (md) => {
      const json = JSON.stringify({
        version: md.version,
        stateDictMetadata: [...md.stateDictMetadata],
        plannerData: [...md.plannerData],
        storageData: [...md.storageData],
        storageMeta: md.storageMeta,
      });
      return Buffer.concat([MAGIC, Buffer.from(json)]);
    },
    decodeMetadata: (bytes): Metadata => {
      decoded++;
      const raw = JSON.parse(Buffer.from(bytes.subarray(MAGIC.length)).toString());
      return {
        version: raw.version,
        stateDictMetadata: new Map(raw.stateDictMetadata),
        plannerData: new Map(raw.plannerData),
        storageData: new Map(raw.storageData),
        storageMeta: raw.storageMeta,
      };
    },
  };

  it("a whole format registered (metadata and items) saves, loads resharded and finds a flipped byte, with no edit to the reader or writer", async () => {
    registerItemFormat(TOY_ITEMS);
    registerCheckpointFormat(TOY);
    expect(checkpointFormats()[0]!.name).toBe("toy"); // asked before the built-ins
    const path = "mem://formats/toy";
    const full = randomTensor("float32", [12, 8], 5);
    await allRanks(2, (pg) =>
      save(
        { w: shardTensor(full, { rank: pg.rank, worldSize: pg.size }), step: 7 },
        { storageWriter: new FileSystemWriter({ path, fs, format: "toy" }), processGroup: pg },
      ),
    );
    // The commit is the toy's own encoding, and the items its framing.
    const metadata = fs.files.get(`${path}/.metadata`)!.bytes;
    expect(Buffer.from(metadata.subarray(0, MAGIC.length)).toString()).toBe("TOYCKPT1\n");
    const data = [...fs.files].find(([k]) => k.startsWith(path) && k.endsWith(".distcp"))![1].bytes;
    expect(Buffer.from(data).includes(Buffer.from(tensorBytes(full).subarray(0, 64)))).toBe(false);
    // Saved as 2 row shards, loaded as 3 column shards: the reader found the toy's metadata itself.
    const before = decoded;
    await allRanks(3, async (pg) => {
      const mine = shardTensor(full, { dim: 1, rank: pg.rank, worldSize: pg.size });
      const sd = {
        w: shardTensor(emptyTensor("float32", [12, 8]), { dim: 1, rank: pg.rank, worldSize: pg.size }),
        step: 0,
      };
      await load(sd, { storageReader: new FileSystemReader({ path, fs }), processGroup: pg });
      expect(sameTensor(sd.w.shards[0]!.tensor, mine.shards[0]!.tensor)).toBe(true);
      expect(sd.step).toBe(7);
    });
    expect(decoded).toBeGreaterThan(before);
    // A flipped stored byte is found by the toy item format's check.
    for (const [k, f] of fs.files) if (k.startsWith(path) && k.endsWith(".distcp")) f.bytes[3]! ^= 1;
    const sd = { w: emptyTensor("float32", [12, 8]), step: 0 };
    await expect(load(sd, { storageReader: new FileSystemReader({ path, fs }) })).rejects.toMatchObject({
      failures: [expect.objectContaining({ code: "CHECKSUM_MISMATCH" })],
    });
  });
});
