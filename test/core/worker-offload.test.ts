import { readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  asyncSave,
  CheckpointException,
  emptyTensor,
  FileSystemReader,
  FileSystemWriter,
  load,
  save,
  shardTensor,
  type Tensor,
  tensor,
  tensorBytes,
} from "@dcpjs/core";
import { METADATA_FILE } from "@dcpjs/core/extend";
import {
  checksumOnWorker,
  computeChecksum,
  copyOnWorker,
  decodeMetadata,
  keepStaging,
  releaseStaging,
  STAGING_KEEP_BYTES,
  STAGING_KEEP_MS,
  stagingBytesKept,
  takeStaging,
  WORKER_MIN_BYTES,
  workerTasksRun,
} from "@dcpjs/core/testing";
import { afterEach, describe, expect, it, vi } from "vitest";
import { exited, spawnTs, waitForLine } from "../support/child.js";
import { flipStoredBits } from "../support/damage.js";
import { allRanks, saveShards } from "../support/ranks.js";
import { randomTensor, sameTensor } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

// 4 MiB float32 tensors: every item is above WORKER_MIN_BYTES.
const SHAPE = [1024, 1024];
const saved = { a: randomTensor("float32", SHAPE, 7), b: randomTensor("float32", SHAPE, 8) };

async function checkpoint(): Promise<string> {
  const dir = await tempDir();
  await save(saved, { checkpointId: dir });
  return dir;
}

describe("checksums and box copies run on worker threads where the bytes lie in shared memory", () => {
  it("emptyTensor allocates on a SharedArrayBuffer; tensor() without data does not", () => {
    expect(emptyTensor("float32", [4]).data.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(tensor("float32", [4]).data.buffer).toBeInstanceOf(ArrayBuffer);
  });

  it("a load into emptyTensor targets checks each large item on a worker, bit-exact", async () => {
    expect(WORKER_MIN_BYTES).toBeLessThanOrEqual(4 * 1024 * 1024);
    const dir = await checkpoint();
    const target = { a: emptyTensor("float32", SHAPE), b: emptyTensor("float32", SHAPE) };
    const before = workerTasksRun();
    await load(target, { checkpointId: dir });
    expect(workerTasksRun() - before).toBe(2); // one CRC per item, read in place
    expect(sameTensor(target.a, saved.a) && sameTensor(target.b, saved.b)).toBe(true);
  });

  it("targets on plain ArrayBuffers, and workerMinBytes: Infinity, keep every check on the main thread", async () => {
    const dir = await checkpoint();
    const plain = { a: tensor("float32", SHAPE), b: tensor("float32", SHAPE) };
    const shared = { a: emptyTensor("float32", SHAPE), b: emptyTensor("float32", SHAPE) };
    const before = workerTasksRun();
    await load(plain, { checkpointId: dir });
    await load(shared, { storageReader: new FileSystemReader({ path: dir, workerMinBytes: Infinity }) });
    expect(workerTasksRun()).toBe(before);
    for (const sd of [plain, shared])
      expect(sameTensor(sd.a, saved.a) && sameTensor(sd.b, saved.b)).toBe(true);
  });

  it("a resharded load copies its boxes out of staged chunks on workers, the same as on the main thread", async () => {
    const dir = await checkpoint();
    // Rows saved whole, loaded as 2 column shards by one rank: every item is staged, checked and copied.
    const shard = () => shardTensor(emptyTensor("float32", SHAPE), { dim: 1, rank: 1, worldSize: 2 });
    const offThread = { a: shard(), b: shard() };
    const onThread = { a: shard(), b: shard() };
    const before = workerTasksRun();
    await load(offThread, { checkpointId: dir });
    expect(workerTasksRun() - before).toBe(4); // a CRC and a copy per item
    await load(onThread, { storageReader: new FileSystemReader({ path: dir, workerMinBytes: Infinity }) });
    for (const k of ["a", "b"] as const) {
      const expected = shardTensor(saved[k], { dim: 1, rank: 1, worldSize: 2 }).shards[0]!.tensor;
      expect(sameTensor(offThread[k].shards[0]!.tensor, expected)).toBe(true);
      expect(sameTensor(onThread[k].shards[0]!.tensor, expected)).toBe(true);
    }
  });

  it("a flipped bit in an item checked on a worker fails the load with its CRC-32 mismatch, fqn and file", async () => {
    const dir = await checkpoint();
    const info = await flipStoredBits(dir, "b\u00000,0", 123_457, 0x10);
    const before = workerTasksRun();
    const error = await load(
      { a: emptyTensor("float32", SHAPE), b: emptyTensor("float32", SHAPE) },
      { checkpointId: dir },
    ).catch((e: unknown) => e);
    expect(workerTasksRun()).toBeGreaterThan(before);
    expect(error).toBeInstanceOf(CheckpointException);
    const root = (error as CheckpointException).failures[0]!.error;
    expect(root).toMatchObject({ code: "CHECKSUM_MISMATCH", fqn: "b", algorithm: "CRC-32" });
    expect((root as Error).message).toContain(info.relativePath);
  });

  it("small items read with one scatter read into shared memory are checked by one worker task, bit-exact; a damaged one is named", async () => {
    // 128 × 16 KiB: one run of 2 MiB (items under 1 MiB are gathered), read into emptyTensor targets.
    const dir = await tempDir();
    const small: Record<string, ReturnType<typeof randomTensor>> = {};
    for (let i = 0; i < 128; i++) small[`t${i}`] = randomTensor("float32", [4096], 100 + i);
    await save(small, { checkpointId: dir });
    const targets = () =>
      Object.fromEntries(Object.keys(small).map((k) => [k, emptyTensor("float32", [4096])]));
    const sd = targets();
    let before = workerTasksRun();
    await load(sd, { checkpointId: dir });
    expect(workerTasksRun() - before).toBe(1);
    for (const k of Object.keys(small)) expect(sameTensor(sd[k]!, small[k]!)).toBe(true);
    const info = await flipStoredBits(dir, "t77\u00000", 999, 0x04);
    before = workerTasksRun();
    const error = await load(targets(), { checkpointId: dir }).catch((e: unknown) => e);
    expect(workerTasksRun() - before).toBe(1);
    const root = (error as CheckpointException).failures[0]!.error;
    expect(root).toMatchObject({ code: "CHECKSUM_MISMATCH", fqn: "t77", algorithm: "CRC-32" });
    expect((root as Error).message).toContain(`${info.relativePath} @ ${info.offset}+16384`);
  });

  it("a read checked partly on a worker and partly here fails with the first mismatch, leaving no unhandled rejection", async () => {
    // Two small neighbours read with one scatter read: "a" into shared memory (checked on a
    // worker, workerMinBytes 0), "b" into a plain ArrayBuffer (checked here). Both are damaged.
    const dir = await tempDir();
    const small = { a: randomTensor("float32", [256], 3), b: randomTensor("float32", [256], 4) };
    await save(small, { checkpointId: dir });
    for (const key of ["a\u0000", "b\u0000"]) await flipStoredBits(dir, key, 5);
    const target = { a: emptyTensor("float32", [256]), b: tensor("float32", [256]) };
    const error = await load(target, {
      storageReader: new FileSystemReader({ path: dir, workerMinBytes: 0 }),
    }).catch((e: unknown) => e);
    const root = (error as CheckpointException).failures[0]!.error;
    expect(root).toMatchObject({ code: "CHECKSUM_MISMATCH", fqn: "b" });
    // The worker's rejection for "a" arrives later; vitest fails the run on an unhandled one.
    await new Promise((resolve) => setTimeout(resolve, 200));
  });

  it("in-process ranks resharding through shared chunks get bit-exact column shards with copies on workers", async () => {
    const dir = await tempDir();
    await saveShards(saved, dir, 4);
    const targets = [0, 1, 2].map((rank) =>
      Object.fromEntries(
        Object.keys(saved).map((k) => [
          k,
          shardTensor(emptyTensor("float32", SHAPE), { dim: 1, rank, worldSize: 3 }),
        ]),
      ),
    );
    const before = workerTasksRun();
    await allRanks(3, (pg) => load(targets[pg.rank]!, { checkpointId: dir, processGroup: pg }));
    expect(workerTasksRun()).toBeGreaterThan(before);
    targets.forEach((sd, rank) => {
      for (const [k, t] of Object.entries(saved)) {
        const got = sd[k]!.shards[0]!.tensor;
        expect(sameTensor(got, shardTensor(t, { dim: 1, rank, worldSize: 3 }).shards[0]!.tensor)).toBe(true);
      }
    });
  });
});

describe("the worker threads", () => {
  it("start only when an item will be checked on one, and do not keep a process alive", async () => {
    const child = spawnTs("./offload-child.ts", [await tempDir(), await tempDir()]);
    const plain = waitForLine(child, /^plain: /);
    const line = await waitForLine(child, /^shared: /);
    const printed = performance.now();
    expect(await plain).toBe("plain: threads 0 tasks 0"); // 4 MiB in plain ArrayBuffers: main thread only
    expect(line).toBe("shared: threads true tasks 2 ok true"); // the save's CRC and the load's, on workers
    expect(await exited(child)).toBe("0");
    // Idle workers exit after 60 s; a process they held would end no sooner.
    expect(performance.now() - printed).toBeLessThan(5_000);
  });
});

describe("saves checksum large shared-memory tensors on worker threads while writing them", () => {
  /** Each item's recorded checksum, by fqn. */
  async function checksums(dir: string): Promise<Record<string, number | undefined>> {
    const md = decodeMetadata(await readFile(join(dir, METADATA_FILE)));
    return Object.fromEntries([...md.storageData].map(([key, info]) => [key, info.crc32]));
  }

  it("records the same CRC-32s as the main thread, and the checkpoint loads bit-exact", async () => {
    const [offThread, onThread] = [await tempDir(), await tempDir()];
    const before = workerTasksRun();
    await save(saved, { checkpointId: offThread });
    expect(workerTasksRun() - before).toBe(2);
    await save(saved, { storageWriter: new FileSystemWriter({ path: onThread, workerMinBytes: Infinity }) });
    expect(workerTasksRun() - before).toBe(2);
    const recorded = await checksums(offThread);
    expect(Object.values(recorded).every((c) => typeof c === "number")).toBe(true);
    expect(recorded).toEqual(await checksums(onThread));
    const target = { a: emptyTensor("float32", SHAPE), b: emptyTensor("float32", SHAPE) };
    await load(target, { checkpointId: offThread });
    expect(sameTensor(target.a, saved.a) && sameTensor(target.b, saved.b)).toBe(true);
  });

  it("asyncSave stages its copies in shared memory, so the background save checksums them on workers", async () => {
    const dir = await tempDir();
    const plain = { a: tensor("float32", SHAPE, tensorBytes(saved.a).slice()), step: 3 };
    const before = workerTasksRun();
    const { staged, completed } = asyncSave(plain, { checkpointId: dir });
    await staged;
    await completed;
    expect(workerTasksRun() - before).toBe(1);
    const target = { a: emptyTensor("float32", SHAPE), step: 0 };
    await load(target, { checkpointId: dir });
    expect(sameTensor(target.a, saved.a)).toBe(true);
    expect(target.step).toBe(3);
  });

  it("small items in plain memory are staged and summed by one worker task per batch: the same CRC-32s and content hashes as on the calling thread", async () => {
    // 128 × 16 KiB, a 2 MiB tensor between them (written from its own memory), 300 tensors of
    // 16 bytes (staged too: each item weighs ITEM_SUMS_OVERHEAD_BYTES), and a value.
    const state: Record<string, Tensor | number> = { step: 11 };
    for (let i = 0; i < 128; i++) state[`s${i}`] = randomTensor("float32", [4096], 200 + i);
    state.big = randomTensor("float32", [512, 1024], 5);
    for (let i = 0; i < 300; i++) state[`tiny${i}`] = randomTensor("float32", [4], 900 + i);
    const [offThread, onThread] = [await tempDir(), await tempDir()];
    const before = workerTasksRun();
    // workerMinBytes 64 KiB: files whose small items weigh 1 MiB (STAGING_MIN_TASKS × it) are staged.
    await save(state, {
      storageWriter: new FileSystemWriter({ path: offThread, workerMinBytes: 64 * 1024 }),
    });
    const tasks = workerTasksRun() - before;
    expect(tasks).toBeGreaterThanOrEqual(1);
    expect(tasks).toBeLessThanOrEqual(8); // batches (and the 2 MiB tensor's own), not items
    await save(state, { storageWriter: new FileSystemWriter({ path: onThread, workerMinBytes: Infinity }) });
    expect(workerTasksRun() - before).toBe(tasks);
    const entries = async (dir: string) => {
      const md = decodeMetadata(await readFile(join(dir, METADATA_FILE)));
      return Object.fromEntries(
        [...md.storageData].map(([key, i]) => [key, [i.offset, i.length, i.crc32, i.contentHash]]),
      );
    };
    const recorded = await entries(offThread);
    expect(
      Object.values(recorded).every(
        ([, , crc, hash]) => typeof crc === "number" && /^[0-9a-f]{32}$/.test(String(hash)),
      ),
    ).toBe(true);
    expect(recorded).toEqual(await entries(onThread));
    const target: Record<string, Tensor | number> = { step: 0 };
    for (const [k, v] of Object.entries(state))
      if (k !== "step") target[k] = emptyTensor("float32", (v as Tensor).shape);
    await load(target, { checkpointId: offThread });
    expect(target.step).toBe(11);
    for (const [k, v] of Object.entries(state))
      if (k !== "step") expect(sameTensor(target[k] as Tensor, v as Tensor)).toBe(true);
  });

  it("refuses work on a worker whose buffers are not shared (a worker would write into a copy)", async () => {
    const plain = new Uint8Array(64);
    const shared = new Uint8Array(new SharedArrayBuffer(64));
    const copy = { run: 64, srcBase: 0, dstBase: 0, counts: [], srcStrides: [], dstStrides: [] };
    await expect(copyOnWorker(shared, plain, copy)).rejects.toThrow(
      /Expected the destination of a copy on a worker thread in a SharedArrayBuffer, got an ArrayBuffer/,
    );
    await expect(checksumOnWorker("crc32", plain)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    shared.fill(7);
    const into = new Uint8Array(new SharedArrayBuffer(64));
    await copyOnWorker(shared, into, copy);
    expect(into.every((b) => b === 7)).toBe(true);
    expect(await checksumOnWorker("crc32", shared)).toBe(computeChecksum("crc32", shared));
  });

  it("rejects a workerMinBytes that is not a number ≥ 0", () => {
    for (const bad of [-1, Number.NaN])
      expect(() => new FileSystemWriter({ path: "/tmp/x", workerMinBytes: bad })).toThrow(
        expect.objectContaining({ code: "INVALID_ARGUMENT" }),
      );
    expect(() => new FileSystemReader({ path: "/tmp/x", workerMinBytes: -5 })).toThrow(
      /Expected workerMinBytes to be a number ≥ 0 \(or Infinity\), got -5/,
    );
  });
});

describe("staging buffers are kept between reads, within a bound, and let go when idle", () => {
  afterEach(() => {
    vi.useRealTimers();
    releaseStaging();
  });

  it("a kept buffer is handed out again (the smallest that fits), in shared memory", () => {
    releaseStaging();
    const small = takeStaging(1000);
    const large = takeStaging(5000);
    expect(small.buffer).toBeInstanceOf(SharedArrayBuffer);
    keepStaging(large);
    keepStaging(small);
    expect(stagingBytesKept()).toBe(6000);
    expect(takeStaging(900)).toBe(small);
    expect(takeStaging(4000)).toBe(large);
    expect(stagingBytesKept()).toBe(0);
    expect(takeStaging(10)).not.toBe(small); // none kept: a new one
    keepStaging(new Uint8Array(100)); // not shared memory: not one of takeStaging's, not kept
    expect(stagingBytesKept()).toBe(0);
  });

  it(`keeps at most STAGING_KEEP_BYTES and lets every buffer go ${STAGING_KEEP_MS} ms after the last one kept`, () => {
    releaseStaging();
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const half = STAGING_KEEP_BYTES / 2;
    const buffers = [takeStaging(half), takeStaging(half), takeStaging(1)];
    for (const b of buffers) keepStaging(b); // the last is over the bound: not kept
    expect(stagingBytesKept()).toBe(STAGING_KEEP_BYTES);
    vi.advanceTimersByTime(STAGING_KEEP_MS - 100);
    keepStaging(takeStaging(half)); // takes a kept one and keeps it again: the wait starts over
    vi.advanceTimersByTime(STAGING_KEEP_MS - 100);
    expect(stagingBytesKept()).toBe(STAGING_KEEP_BYTES);
    vi.advanceTimersByTime(200);
    expect(stagingBytesKept()).toBe(0);
  });
});
