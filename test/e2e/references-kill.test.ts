// Crash and race safety of incremental checkpoints (#25), with real processes: (1) a save with a
// base killed (SIGKILL) at random points never damages its base or any earlier checkpoint; (2)
// `dcp gc --keep-last` (collectGarbage in a child, pass after pass) beside 20 incremental saves
// whose bases it would otherwise remove deletes nothing a committed or in-flight save references.

import { access } from "node:fs/promises";
import { join } from "node:path";
import { CheckpointError, CheckpointException, LocalFileSystem, save } from "@dcpjs/core";
import { listCheckpoints, verifyCheckpoint } from "@dcpjs/core/ops";
import { S3FileSystem } from "@dcpjs/s3";
import { describe, expect, it } from "vitest";
import { exited, spawnTs, waitForLine } from "../support/child.js";
import { incrementalState, loadsAsStep } from "../support/incremental-fixture.js";
import { freshUri, s3Env, testClient } from "../support/s3.js";
import { tempDir } from "../support/tmp.js";

const committed = (path: string) =>
  access(join(path, ".metadata")).then(
    () => true,
    () => false,
  );

/** Verifies (every item's checksum, through references) and loads bit-exact the checkpoint of `step` at `path`. */
async function expectIntact(path: string, step: number): Promise<void> {
  const report = await verifyCheckpoint(path);
  expect(report.damaged, path).toEqual([]);
  expect(await loadsAsStep(path, step), path).toBe(true);
}

const codeOf = (error: unknown) =>
  error instanceof CheckpointException
    ? error.failures[0]?.code
    : error instanceof CheckpointError
      ? error.code
      : String(error);

describe("incremental checkpoints under kills and a racing gc", () => {
  it("a save with a base killed at random points (10 rounds) leaves the base and every earlier checkpoint byte-exact", async () => {
    const run = await tempDir();
    await save(incrementalState(0), { checkpointId: join(run, "step-0") });
    const done = [0];
    // One round not killed, to learn how long a save takes after "ready".
    const timing = spawnTs("../support/incremental-save-child.ts", [
      join(run, "step-1"),
      "1",
      join(run, "step-0"),
    ]);
    await waitForLine(timing, /ready/);
    const started = performance.now();
    expect(await waitForLine(timing, /committed|error/)).toBe("committed");
    const took = performance.now() - started;
    await exited(timing);
    done.push(1);
    let kills = 0;
    for (let step = 2; step < 12; step++) {
      const base = done.at(-1)!;
      const path = join(run, `step-${step}`);
      const child = spawnTs("../support/incremental-save-child.ts", [
        path,
        String(step),
        join(run, `step-${base}`),
      ]);
      await waitForLine(child, /ready/);
      // Spread over the rounds, each at a random point of its tenth: from before the save's first
      // write (its lease in the base) to after its commit.
      await new Promise((r) => setTimeout(r, (took * (step - 2 + Math.random())) / 9));
      if (child.exitCode === null) kills++;
      child.kill("SIGKILL");
      await exited(child);
      if (await committed(path)) done.push(step);
      for (const s of done) await expectIntact(join(run, `step-${s}`), s);
    }
    expect(kills).toBeGreaterThan(0);
  }, 120_000);

  for (const where of ["a local folder", "S3"] as const)
    it(`gc --keep-last 1, pass after pass beside 20 incremental saves, deletes nothing a committed or in-flight save references (${where})`, async () => {
      const local = where === "a local folder";
      if (!local) Object.assign(process.env, s3Env()); // the saves and the gc child build their clients from them
      const run = local ? await tempDir() : freshUri("run");
      const fs = local ? new LocalFileSystem() : new S3FileSystem({ client: testClient() });
      const at = (step: number) => `${run}/step-${step}`;
      const isCommitted = (step: number) => fs.exists(fs.concatPath(at(step), ".metadata"));
      await save(incrementalState(0), { checkpointId: at(0) });
      const gc = spawnTs("../support/gc-loop.ts", [run, "0", "1"]);
      const refused: string[] = [];
      try {
        await waitForLine(gc, /^pass/);
        const saved: number[] = [0];
        for (let step = 1; step <= 20; step++) {
          // The base is two steps back: older than the newest, so gc would remove it but for the lease.
          const want = step >= 2 ? step - 2 : 0;
          const base = (await isCommitted(want)) ? want : saved.at(-1)!;
          try {
            await save(incrementalState(step), { checkpointId: at(step), base: at(base) });
            saved.push(step);
            await expectIntact(at(step), step); // its bases stay while it is the newest
          } catch (error) {
            // gc removed the base before the save took its lease: refused, nothing committed.
            refused.push(`${step}: ${codeOf(error)}`);
            expect(["BASE_REMOVED", "NOT_FOUND"]).toContain(codeOf(error));
            expect(await isCommitted(step)).toBe(false);
          }
        }
        expect(saved.length, refused.join("; ")).toBeGreaterThanOrEqual(15);
      } finally {
        gc.kill("SIGKILL");
        await exited(gc);
      }
      const left = await listCheckpoints(run);
      expect(left.length).toBeLessThan(21); // gc did remove
      for (const c of left) await expectIntact(c.id, Number(c.id.split("-").at(-1)));
      expect(left.map((c) => c.id)).toContain(at(20));
    }, 180_000);
});
