import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type RankOutcome, reports, spawnRankWorkers, waitForText } from "../support/rank-jobs.js";
import { startRedisServer } from "../support/redis-server.js";
import { tempDir } from "../support/tmp.js";

const servers: { stop(): Promise<void>; pid: number }[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    try {
      process.kill(s.pid, "SIGCONT");
    } catch {
      // already gone
    }
    await s.stop();
  }
});

/** A redis-server of this test's own, to pause or kill. */
async function ownRedis() {
  const server = await startRedisServer(() => {}, { own: true });
  servers.push(server);
  return server;
}

/**
 * Starts two 3-rank save jobs at once on one group id (seeds 1 and 2, each its own folder), with
 * `env(seed)` added, and waits for both.
 */
async function twoJobs(url: string, env: (seed: string) => Record<string, string>) {
  const groupId = `shared-${randomUUID()}`;
  const targets = [join(await tempDir(), "a"), join(await tempDir(), "b")] as const;
  const jobs = await Promise.all(
    targets.map((target, i) =>
      reports(
        spawnRankWorkers(3, {
          DCPJS_REDIS_URL: url,
          DCPJS_GROUP_ID: groupId,
          MODE: "save",
          TARGET: target,
          SEED: String(i + 1),
          ...env(String(i + 1)),
        }),
      ),
    ),
  );
  return { jobs, targets };
}

/** Loads `target` with 2 ranks on `url` and returns whether each verified the job of `seed` bit-exactly. */
async function verifies(url: string, target: string, seed: number): Promise<boolean> {
  const out = await reports(
    spawnRankWorkers(2, { DCPJS_REDIS_URL: url, MODE: "load", TARGET: target, SEED: String(seed) }),
  );
  return out.every((o) => o.report?.ok === true && o.report.mismatches?.length === 0);
}

const codeOf = (o: RankOutcome) => o.report?.error?.code;

describe("the Redis process group under faults (real rank processes, a redis-server of the test's own)", () => {
  it("two jobs with their own DCPJS_JOB_ID on one group id never share collectives", async () => {
    const { url } = await ownRedis();
    const {
      jobs,
      targets: [a, b],
    } = await twoJobs(url, (seed) => ({ DCPJS_JOB_ID: `job-${seed}` }));
    const [outA, outB] = jobs;
    expect([...outA!, ...outB!].map((o) => o.report?.ok)).toEqual(Array(6).fill(true));
    expect(await verifies(url, a, 1)).toBe(true);
    expect(await verifies(url, b, 2)).toBe(true);
  }, 120_000);

  it("two jobs started at once on one group id without a job id fail with GROUP_CONFLICT (a rank claimed twice, or ranks saving to different checkpoints) or save their own data — never a mix", async () => {
    const { url } = await ownRedis();
    const {
      jobs,
      targets: [a, b],
    } = await twoJobs(url, () => ({ DCPJS_TIMEOUT_MS: "4000" }));
    for (const [i, out] of jobs.entries()) {
      if (out.every((o) => o.report?.ok)) {
        expect(await verifies(url, [a, b][i]!, i + 1)).toBe(true);
      } else {
        for (const o of out.filter((x) => !x.report?.ok)) {
          const text = JSON.stringify(o.report?.error);
          expect(text).toMatch(/GROUP_CONFLICT|TIMEOUT|two jobs in one process group/);
        }
      }
    }
  }, 120_000);

  it("a Redis paused (SIGSTOP) for 3× the timeout ends every rank within its deadline, with TIMEOUT", async () => {
    const server = await ownRedis();
    const children = spawnRankWorkers(3, {
      DCPJS_REDIS_URL: server.url,
      DCPJS_TIMEOUT_MS: "2000",
      MODE: "barriers",
    });
    const done = reports(children);
    await Promise.all(children.map((c) => waitForText(c, "joined")));
    process.kill(server.pid, "SIGSTOP");
    const pausedAt = performance.now();
    const resume = setTimeout(() => process.kill(server.pid, "SIGCONT"), 6000);
    const out = await done;
    clearTimeout(resume);
    for (const o of out) {
      expect(codeOf(o)).toBe("TIMEOUT");
      expect(o.report!.error!.message).toMatch(/Redis at 127\.0\.0\.1:\d+ did not answer within 4000 ms/);
      // timeout + grace, plus process exit
      expect(o.exitedAt - pausedAt).toBeLessThan(2000 + 2000 + 1500);
    }
  }, 60_000);

  it("a Redis killed under the ranks gives each a typed error naming Redis and the rank, and no unhandled error event", async () => {
    const server = await ownRedis();
    const children = spawnRankWorkers(3, {
      DCPJS_REDIS_URL: server.url,
      DCPJS_TIMEOUT_MS: "3000",
      MODE: "barriers",
    });
    const done = reports(children);
    await Promise.all(children.map((c) => waitForText(c, "joined")));
    process.kill(server.pid, "SIGKILL");
    const out = await done;
    for (const [rank, o] of out.entries()) {
      expect(["IO_ERROR", "TIMEOUT"]).toContain(codeOf(o));
      expect(o.report!.error!.message).toMatch(
        new RegExp(`Redis at 127\\.0\\.0\\.1:\\d+ .*\\(rank ${rank}\\)`),
      );
      expect(o.stderr).not.toMatch(/Unhandled error event/);
    }
  }, 60_000);

  it("a rank killed after the commit does not fail the others: every survivor succeeds and the checkpoint loads", async () => {
    const { url } = await ownRedis();
    const target = join(await tempDir(), "ckpt");
    const out = await reports(
      spawnRankWorkers(4, {
        DCPJS_REDIS_URL: url,
        DCPJS_TIMEOUT_MS: "8000",
        MODE: "save",
        TARGET: target,
        EXIT_AT_BROADCAST_RANK: "2",
      }),
    );
    expect(out[2]!.report).toBeUndefined(); // killed
    for (const r of [0, 1, 3]) expect(out[r]!.report).toMatchObject({ ok: true });
    expect(await verifies(url, target, 0)).toBe(true);
  }, 60_000);

  it("a coordinator killed right after its commit: every other rank finds the commit and succeeds, not a bare TIMEOUT", async () => {
    const { url } = await ownRedis();
    const target = join(await tempDir(), "ckpt");
    const out = await reports(
      spawnRankWorkers(3, {
        DCPJS_REDIS_URL: url,
        DCPJS_TIMEOUT_MS: "3000",
        MODE: "save",
        TARGET: target,
        EXIT_AT_BROADCAST_RANK: "0",
      }),
    );
    expect(out[0]!.report).toBeUndefined(); // killed at the commit's broadcast
    for (const r of [1, 2]) expect(out[r]!.report).toMatchObject({ ok: true });
    expect(await verifies(url, target, 0)).toBe(true);
  }, 60_000);
});
