import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import {
  asyncSave,
  CheckpointError,
  CheckpointException,
  createLocalProcessGroups,
  emptyTensor,
  load,
  type ProcessGroup,
  shardTensor,
} from "@dcpjs/core";
import { METADATA_FILE } from "@dcpjs/core/extend";
import { saveThreadsStarted } from "@dcpjs/core/testing";
import { describe, expect, it } from "vitest";
import { allRanks, runRanks } from "../support/ranks.js";
import { randomTensor, sameTensor } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

/**
 * Holds this thread (as a synchronous training step does) until `dir`'s `.metadata` appears or
 * `ms` pass; returns whether it appeared. A save on this thread's event loop cannot commit meanwhile.
 */
function blockUntilCommitted(dir: string, ms: number): boolean {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) if (existsSync(join(dir, METADATA_FILE))) return true;
  return false;
}

/** A user's own group: the calls of a local rank, without `describeForWorker`. */
function ownGroup(pg: ProcessGroup): ProcessGroup {
  return {
    rank: pg.rank,
    size: pg.size,
    gather: (v, root) => pg.gather(v, root),
    scatter: (v, root) => pg.scatter(v, root),
    broadcast: (v, root) => pg.broadcast(v, root),
    allGather: (v) => pg.allGather(v),
    barrier: () => pg.barrier(),
  };
}

describe("asyncSave's save thread", () => {
  it("commits while the calling thread is held after staged (a synchronous step)", async () => {
    const dir = await tempDir();
    const w = randomTensor("float32", [256, 64], 1);
    const { staged, completed } = asyncSave({ w, step: 5 }, { checkpointId: dir });
    await staged;
    expect(blockUntilCommitted(dir, 20_000)).toBe(true);
    await completed;
    const target = { w: emptyTensor("float32", [256, 64]), step: 0 };
    await load(target, { checkpointId: dir });
    expect(sameTensor(target.w, w)).toBe(true);
    expect(target.step).toBe(5);
  });

  it("runs the collectives of in-process ranks among themselves there, with the calling thread held", async () => {
    const dir = await tempDir();
    const full = randomTensor("float64", [12, 4], 3);
    const groups = createLocalProcessGroups(3);
    const saves = groups.map((pg) =>
      asyncSave(
        { w: shardTensor(full, { rank: pg.rank, worldSize: 3 }) },
        { checkpointId: dir, processGroup: pg },
      ),
    );
    await Promise.all(saves.map((s) => s.staged));
    expect(blockUntilCommitted(dir, 20_000)).toBe(true);
    await Promise.all(saves.map((s) => s.completed));
    // The ranks' own group still works on the calling thread, its rounds apart from the save thread's.
    expect(await Promise.all(groups.map((pg) => pg.allGather(pg.rank)))).toEqual([
      [0, 1, 2],
      [0, 1, 2],
      [0, 1, 2],
    ]);
    const target = { w: emptyTensor("float64", [12, 4]) };
    await load(target, { checkpointId: dir });
    expect(sameTensor(target.w, full)).toBe(true);
  });

  it("rebuilds a CheckpointException here: its class, code, step, and each rank's failure with its own error", async () => {
    const dir = await tempDir();
    const settled = await runRanks(2, (pg) => {
      const sd = pg.rank === 1 ? { "a.b": 1, a: { b: 2 } } : { a: { c: 1 } };
      return asyncSave(sd, { checkpointId: dir, processGroup: pg }).completed;
    });
    for (const s of settled) {
      expect(s.status).toBe("rejected");
      const e = (s as PromiseRejectedResult).reason as CheckpointException;
      expect(e).toBeInstanceOf(CheckpointException);
      expect(e.code).toBe("INVALID_STATE_DICT");
      expect(e.step).toBe("plan");
      expect(e.failedRanks).toEqual([1]);
      expect(e.failures[0]!.code).toBe("INVALID_STATE_DICT");
      expect(e.failures[0]!.error).toBeInstanceOf(CheckpointError);
      expect(e.cause).toBeInstanceOf(CheckpointError);
      expect(e.message).toMatch(/^Checkpoint step "plan" failed on rank\(s\) \[1\]: rank 1: /);
    }
  });

  it("passes an abort on (its reason too) and keeps the thread for the next save, one thread for all", async () => {
    const controller = new AbortController();
    const aborted = asyncSave(
      { w: randomTensor("float32", [64]) },
      { checkpointId: await tempDir(), signal: controller.signal },
    );
    controller.abort("stop");
    const e = await aborted.completed.then(
      () => expect.unreachable("expected ABORTED"),
      (error: unknown) => error as CheckpointError,
    );
    expect(e.code).toBe("ABORTED");
    expect((e.cause as CheckpointError).cause).toBe("stop");

    const started = saveThreadsStarted();
    const dir = await tempDir();
    const w = randomTensor("int32", [32], 9);
    await asyncSave({ w }, { checkpointId: dir }).completed;
    await asyncSave({ w }, { checkpointId: await tempDir() }).completed;
    expect(saveThreadsStarted()).toBe(started);
    expect(saveThreadsStarted()).toBe(1);
  });

  it("falls back to the calling thread for a group it cannot rebuild (a user's own object)", async () => {
    const dir = await tempDir();
    const full = randomTensor("float32", [8, 2], 4);
    const groups = createLocalProcessGroups(2).map(ownGroup);
    const saves = groups.map((pg) =>
      asyncSave(
        { w: shardTensor(full, { rank: pg.rank, worldSize: 2 }) },
        { checkpointId: dir, processGroup: pg },
      ),
    );
    await Promise.all(saves.map((s) => s.staged));
    // On the calling thread, the commit waits for this thread's loop.
    expect(blockUntilCommitted(dir, 300)).toBe(false);
    await Promise.all(saves.map((s) => s.completed));
    expect(existsSync(join(dir, METADATA_FILE))).toBe(true);
    await allRanks(1, async () => {
      const target = { w: emptyTensor("float32", [8, 2]) };
      await load(target, { checkpointId: dir });
      expect(sameTensor(target.w, full)).toBe(true);
    });
  });

  it("keeps the process alive while a save runs on it, and not once it is idle", async () => {
    const [awaited, leftRunning] = [await tempDir(), await tempDir()];
    const program = `
      import { asyncSave, tensor } from "@dcpjs/core";
      const sd = () => ({ a: tensor("float32", [1024], new Float32Array(1024).fill(1)) });
      await asyncSave(sd(), { checkpointId: ${JSON.stringify(awaited)} }).completed;
      asyncSave(sd(), { checkpointId: ${JSON.stringify(leftRunning)} });
      console.log("done");`;
    const started = Date.now();
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["--import", "tsx", "--conditions=@dcpjs/source", "--input-type=module", "-e", program],
      { cwd: fileURLToPath(new URL("../../", import.meta.url)), timeout: 30_000 },
    );
    expect(stdout.trim()).toBe("done");
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(existsSync(join(awaited, METADATA_FILE))).toBe(true);
    expect(existsSync(join(leftRunning, METADATA_FILE))).toBe(true);
  });
});
