import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import "@dcpjs/s3";
import { asyncSave, CheckpointException, emptyTensor, load, shardTensor } from "@dcpjs/core";
import type { RedisProcessGroup } from "@dcpjs/redis";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { redisGroups } from "../support/redis.js";
import { freshUri, s3Env } from "../support/s3.js";
import { randomTensor, sameTensor } from "../support/tensors.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

beforeAll(() => {
  Object.assign(process.env, s3Env());
});

const open: RedisProcessGroup[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((g) => g.close()));
});

/**
 * Whether a checkpoint is committed, asked by a child process while this thread waits for it
 * synchronously (as during a synchronous training step: nothing of this thread's loop runs).
 */
function committedWhileHeld(uri: string): boolean {
  const program = `import "@dcpjs/s3"; import { createStorageReader } from "@dcpjs/core";
    await (await createStorageReader(process.argv[1])).readMetadata();`;
  try {
    execFileSync(
      process.execPath,
      ["--import", "tsx", "--conditions=@dcpjs/source", "--input-type=module", "-e", program, uri],
      { cwd: ROOT, stdio: "ignore", timeout: 30_000 },
    );
    return true;
  } catch {
    return false;
  }
}

describe("asyncSave's save thread with Redis ranks and S3 storage", () => {
  it("rebuilds the Redis ranks and the s3:// backend there: the checkpoint commits while this thread is held", async () => {
    const pgs = await redisGroups(2);
    open.push(...pgs);
    const uri = freshUri("bg");
    const full = randomTensor("float32", [64, 16], 7);
    const saves = pgs.map((pg) =>
      asyncSave(
        { w: shardTensor(full, { rank: pg.rank, worldSize: 2 }), step: 3 },
        { checkpointId: uri, processGroup: pg },
      ),
    );
    await Promise.all(saves.map((s) => s.staged));
    let committed = false;
    for (let i = 0; i < 10 && !committed; i++) committed = committedWhileHeld(uri);
    expect(committed).toBe(true);
    await Promise.all(saves.map((s) => s.completed));
    // The ranks' own group is untouched by the save thread's collectives (their own namespace).
    expect(await Promise.all(pgs.map((pg) => pg.allGather(pg.rank)))).toEqual([
      [0, 1],
      [0, 1],
    ]);
    const target = { w: emptyTensor("float32", [64, 16]), step: 0 };
    await load(target, { checkpointId: uri });
    expect(sameTensor(target.w, full)).toBe(true);
    expect(target.step).toBe(3);
  });

  it("brings a rank's failure back to every rank as today's CheckpointException, and the next save works", async () => {
    const pgs = await redisGroups(2);
    open.push(...pgs);
    const uri = freshUri("bg-fail");
    const failed = await Promise.allSettled(
      pgs.map(
        (pg) =>
          asyncSave(pg.rank === 1 ? { "a.b": 1, a: { b: 2 } } : { a: { c: 1 } }, {
            checkpointId: uri,
            processGroup: pg,
          }).completed,
      ),
    );
    for (const s of failed) {
      const e = (s as PromiseRejectedResult).reason as CheckpointException;
      expect(e).toBeInstanceOf(CheckpointException);
      expect([e.code, e.step, e.failedRanks]).toEqual(["INVALID_STATE_DICT", "plan", [1]]);
    }
    await Promise.all(
      pgs.map(
        (pg) => asyncSave({ r: pg.rank === 0 ? 1 : 2 }, { checkpointId: uri, processGroup: pg }).completed,
      ),
    );
    const target = { r: 0 };
    await load(target, { checkpointId: uri });
    expect(target.r).toBe(1);
  });
});
