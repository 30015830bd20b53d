import { readdir, readFile, rm, stat, truncate } from "node:fs/promises";
import { join } from "node:path";
import {
  CheckpointError,
  CheckpointException,
  emptyTensor,
  FileSystemWriter,
  load,
  save,
  type Tensor,
} from "@dcpjs/core";
import { METADATA_FILE, type SavePlan, type SavePlanner, type WriteResult } from "@dcpjs/core/extend";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { describeCrashSafeOverwrite } from "../support/overwrite-suite.js";
import { randomTensor, sameTensor, seededState, seededTarget, whichSeed } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

const MiB = 1024 * 1024;

/** Unhandled rejections seen during the current test (each would kill a Node process). */
let unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);
beforeEach(() => {
  unhandled = [];
  process.on("unhandledRejection", onUnhandled);
});
afterEach(async () => {
  await new Promise((r) => setTimeout(r, 20)); // let late rejections surface
  process.off("unhandledRejection", onUnhandled);
  expect(unhandled).toEqual([]);
});

/** The root failure of a collective error (first rank's), or the error itself. */
function rootOf(error: unknown): CheckpointError {
  if (error instanceof CheckpointException) return error.failures[0]!.error as CheckpointError;
  return error as CheckpointError;
}

async function failureOf(p: Promise<unknown>): Promise<CheckpointError> {
  const e = await p.then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(e).toBeInstanceOf(CheckpointError);
  return rootOf(e);
}

const dataFiles = async (dir: string) => (await readdir(dir)).filter((f) => f.endsWith(".distcp")).sort();

describe("no unhandled rejection, and aborts that settle", () => {
  it("a read that fails while read-ahead reads are in flight only rejects the load", async () => {
    const dir = await tempDir();
    const sd: Record<string, Tensor> = {};
    for (let i = 0; i < 6; i++) sd[`x${i}`] = randomTensor("float32", [MiB], i + 1); // 4 MiB each
    await save(sd, { checkpointId: dir });
    const [file] = await dataFiles(dir);
    await truncate(join(dir, file!), 4 * MiB + 16); // x0 whole, the rest cut off
    const target: Record<string, Tensor> = {};
    for (let i = 0; i < 6; i++) target[`x${i}`] = emptyTensor("float32", [MiB]);
    expect((await failureOf(load(target, { checkpointId: dir }))).code).toBe("TRUNCATED");
  });

  it("a load aborted at any point settles within 1 s with ABORTED (or completes)", async () => {
    const dir = await tempDir();
    const sd: Record<string, Tensor> = {};
    for (let i = 0; i < 8; i++) sd[`x${i}`] = randomTensor("float32", [2 * MiB], i + 1); // 64 MiB
    await save(sd, { checkpointId: dir, storageWriter: new FileSystemWriter({ path: dir, threadCount: 2 }) });
    for (const delay of [0, 1, 3, 8, 15, 30, 60]) {
      const target: Record<string, Tensor> = {};
      for (let i = 0; i < 8; i++) target[`x${i}`] = emptyTensor("float32", [2 * MiB]);
      const controller = new AbortController();
      const done = load(target, { checkpointId: dir, signal: controller.signal }).then(
        () => "loaded",
        (e: unknown) => rootOf(e).code,
      );
      await new Promise((r) => setTimeout(r, delay));
      controller.abort();
      const abortedAt = performance.now();
      expect(["loaded", "ABORTED"]).toContain(await done);
      expect(performance.now() - abortedAt).toBeLessThan(1000);
    }
  });

  it("a save aborted at any point settles within 1 s, commits nothing and leaves no data file", async () => {
    for (const delay of [0, 2, 5, 10, 20, 40]) {
      const dir = await tempDir();
      const sd: Record<string, Tensor> = {};
      for (let i = 0; i < 8; i++) sd[`x${i}`] = randomTensor("float32", [2 * MiB], i + 1);
      const controller = new AbortController();
      const writer = new FileSystemWriter({ path: dir, threadCount: 2 });
      const done = save(sd, { storageWriter: writer, signal: controller.signal }).then(
        () => "saved",
        (e: unknown) => rootOf(e).code,
      );
      await new Promise((r) => setTimeout(r, delay));
      controller.abort();
      const abortedAt = performance.now();
      const outcome = await done;
      expect(performance.now() - abortedAt).toBeLessThan(1000);
      expect(["saved", "ABORTED"]).toContain(outcome);
      if (outcome === "ABORTED") {
        expect(await readdir(dir)).toEqual([]);
      }
    }
  });
});

describe("the root cause, never a sibling's abort", () => {
  async function twoFiles() {
    const dir = await tempDir();
    const big = randomTensor("float32", [16 * MiB], 1); // 64 MiB, file 0
    const small = randomTensor("float32", [256], 2); // file 1
    await save({ big, small }, { storageWriter: new FileSystemWriter({ path: dir, threadCount: 2 }) });
    const files = await dataFiles(dir);
    const target = () => ({ big: emptyTensor("float32", [16 * MiB]), small: emptyTensor("float32", [256]) });
    return { dir, files, target };
  }

  it("a missing data file is reported as NOT_FOUND naming it, not as the healthy file's abort", async () => {
    const { dir, files, target } = await twoFiles();
    const missing = files.find((f) => f.startsWith("__0_1."))!;
    await rm(join(dir, missing));
    const f = await failureOf(load(target(), { checkpointId: dir }));
    expect(f.code).toBe("NOT_FOUND");
    expect(f.message).toContain(missing);
  });

  it("a damaged small file is reported as CHECKSUM_MISMATCH naming its fqn", async () => {
    const { dir, files, target } = await twoFiles();
    const path = join(dir, files.find((f) => f.startsWith("__0_1."))!);
    const bytes = await readFile(path);
    bytes[10]! ^= 1;
    const { writeFile } = await import("node:fs/promises");
    await writeFile(path, bytes);
    const f = await failureOf(load(target(), { checkpointId: dir }));
    expect(f.code).toBe("CHECKSUM_MISMATCH");
    expect(f.message).toContain('"small"');
  });
});

/** A real FileSystemWriter whose second file fails mid-write (a fault injected by the test). */
class FailingSecondFileWriter extends FileSystemWriter {
  override async writeData(plan: SavePlan, planner: SavePlanner): Promise<WriteResult[]> {
    let calls = 0;
    const failing: SavePlanner = Object.create(planner);
    failing.resolveData = (item) => {
      if (++calls === 5) throw new Error("injected write fault");
      return planner.resolveData(item);
    };
    return super.writeData(plan, failing);
  }
}

describe("crash-safe overwrite", () => {
  it("a successful overwrite replaces the checkpoint and removes the files it superseded", async () => {
    const dir = await tempDir();
    await save(seededState(1), { checkpointId: dir });
    const before = await dataFiles(dir);
    await save(seededState(2), { checkpointId: dir });
    const after = await dataFiles(dir);
    expect(after).toHaveLength(1);
    expect(after).not.toEqual(before);
    expect((await readdir(dir)).sort()).toEqual([METADATA_FILE, ...after].sort());
    const sd = seededTarget();
    await load(sd, { checkpointId: dir });
    expect(whichSeed(sd, [1, 2])).toBe(2);
  });

  it("a rank failing in its write step leaves the old checkpoint loadable, byte-exact", async () => {
    const dir = await tempDir();
    await save(seededState(1), { checkpointId: dir });
    const metadataBefore = await readFile(join(dir, METADATA_FILE));
    const filesBefore = await dataFiles(dir);
    const f = await failureOf(
      save(seededState(2), { storageWriter: new FailingSecondFileWriter({ path: dir, threadCount: 2 }) }),
    );
    expect(f.message).toBe("injected write fault");
    expect(Buffer.compare(await readFile(join(dir, METADATA_FILE)), metadataBefore)).toBe(0);
    expect(await dataFiles(dir)).toEqual(filesBefore); // the failed save removed its own files
    const sd = seededTarget();
    await load(sd, { checkpointId: dir });
    expect(whichSeed(sd, [1])).toBe(1);
  });
});

describe("exclusive create (overwrite: false)", () => {
  it("an in-process save with overwrite: false onto a committed checkpoint fails and leaves it as it was", async () => {
    const dir = await tempDir();
    const w = randomTensor("float32", [64], 3);
    await save({ w }, { checkpointId: dir });
    const before = (await stat(join(dir, METADATA_FILE))).mtimeMs;
    const f = await failureOf(
      save(
        { w: randomTensor("float32", [64], 4) },
        { storageWriter: new FileSystemWriter({ path: dir, overwrite: false }) },
      ),
    );
    expect(f.code).toBe("CHECKPOINT_EXISTS");
    expect((await stat(join(dir, METADATA_FILE))).mtimeMs).toBe(before);
    const sd = { w: emptyTensor("float32", [64]) as Tensor };
    await load(sd, { checkpointId: dir });
    expect(sameTensor(sd.w, w)).toBe(true);
  });
});

describeCrashSafeOverwrite("a local folder", {
  fresh: async () => join(await tempDir(), "ckpt"),
  list: async (path) => readdir(path),
});
