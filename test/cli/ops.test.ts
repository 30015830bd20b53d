import { execFile, spawn } from "node:child_process";
import { readdir, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { FileSystemWriter, LocalFileSystem, load, save } from "@dcpjs/core";
import { METADATA_FILE, SAVE_LEASE_EXPIRY_MS } from "@dcpjs/core/extend";
import { collectGarbage, removeCheckpoint } from "@dcpjs/core/ops";
import { saveLeaseFile } from "@dcpjs/core/testing";
import { describe, expect, it } from "vitest";
import { exited } from "../support/child.js";
import { describeCheckpointOps } from "../support/ops-suite.js";
import { seededState, seededTarget, whichSeed } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

describeCheckpointOps("a local folder", {
  fresh: async () => join(await tempDir(), "ckpt"),
  fs: () => new LocalFileSystem(),
  writer: (path) => new FileSystemWriter({ path }),
});

/** A lease a killed save left behind: its rank died, so it was never removed, and it has expired. */
async function expiredLease(dir: string, tag: string): Promise<string> {
  const lease = join(dir, saveLeaseFile(tag));
  await writeFile(lease, "");
  const then = (Date.now() - SAVE_LEASE_EXPIRY_MS - 60_000) / 1000;
  await utimes(lease, then, then);
  return lease;
}

describe("removing a checkpoint leaves its folder empty of dcpjs files", () => {
  it("dcp rm removes an expired save lease too", async () => {
    const dir = join(await tempDir(), "ckpt");
    await save(seededState(1), { checkpointId: dir });
    await expiredLease(dir, "0123456789ab");
    const r = await removeCheckpoint(dir);
    expect(r.removed).toContain(".save.0123456789ab.lease");
    expect(await readdir(dir)).toEqual([]);
  });

  it("gc --keep-last removes an older checkpoint whole, its expired lease included", async () => {
    const run = join(await tempDir(), "run");
    await save(seededState(1), { checkpointId: join(run, "step-1") });
    await save(seededState(2), { checkpointId: join(run, "step-2") });
    const t = Date.now() / 1000;
    await utimes(join(run, "step-1", METADATA_FILE), t - 60, t - 60);
    await expiredLease(join(run, "step-1"), "0123456789ab");
    const r = await collectGarbage(run, { keepLast: 1, graceMs: 0 });
    expect(r.removed).toEqual([join(run, "step-1")]);
    expect(await readdir(join(run, "step-1"))).toEqual([]);
    expect((await readdir(join(run, "step-2"))).length).toBeGreaterThan(0);
  });

  it("a damaged checkpoint: rm refuses without --force (naming the code), removes it whole with it; gc --keep-last leaves it", async () => {
    const run = join(await tempDir(), "run");
    await save(seededState(1), { checkpointId: join(run, "step-1") });
    await save(seededState(2), { checkpointId: join(run, "step-2") });
    await save(seededState(3), { checkpointId: join(run, "step-3") });
    const t = Date.now() / 1000;
    await writeFile(join(run, "step-1", METADATA_FILE), "damaged");
    await utimes(join(run, "step-1", METADATA_FILE), t - 120, t - 120);
    await utimes(join(run, "step-2", METADATA_FILE), t - 60, t - 60);
    const gc = await collectGarbage(run, { keepLast: 1, graceMs: 0 });
    expect(gc.removed).toEqual([join(run, "step-2")]);
    expect(await readdir(join(run, "step-1"))).toContain(METADATA_FILE);
    await expect(removeCheckpoint(join(run, "step-1"))).rejects.toMatchObject({
      code: "MALFORMED_METADATA",
      message: expect.stringMatching(/use --force to remove the damaged checkpoint/),
    });
    await removeCheckpoint(join(run, "step-1"), { force: true });
    expect(await readdir(join(run, "step-1"))).toEqual([]);
  });
});

describe("the dcp ls / rm / gc / cp commands", () => {
  const CLI = fileURLToPath(new URL("../../packages/cli/src/cli.ts", import.meta.url));
  const dcp = (args: string[]) =>
    promisify(execFile)(process.execPath, ["--import", "tsx", "--conditions=@dcpjs/source", CLI, ...args]);

  it("print JSON, exit 2 on bad arguments, and a copy killed at any point leaves nothing loadable", async () => {
    const run = join(await tempDir(), "run");
    await save(seededState(2), { checkpointId: join(run, "step-1") });
    const verified = JSON.parse((await dcp(["verify", join(run, "step-1"), "--json"])).stdout);
    expect(verified).toMatchObject({ checked: 17, damaged: [], unchecksummed: 0 });
    const ls = JSON.parse((await dcp(["ls", run, "--json"])).stdout) as { state: string }[];
    expect(ls.map((c) => c.state)).toEqual(["committed"]);
    const rm = await dcp(["rm", join(run, "nothing-here")]).catch((e: { code: number; stderr: string }) => e);
    expect((rm as { code: number }).code).toBe(2);
    expect((rm as { stderr: string }).stderr).toMatch(/Expected a committed checkpoint/);
    expect(
      JSON.parse((await dcp(["gc", join(run, "step-1"), "--dry-run", "--grace", "1", "--json"])).stdout),
    ).toMatchObject({
      dryRun: true,
      removed: [],
    });
    // kill a cp part-way, several times at random points: the destination never loads half a checkpoint
    for (let trial = 0; trial < 3; trial++) {
      const dst = join(await tempDir(), "copy");
      const child = spawn(
        process.execPath,
        [
          "--import",
          "tsx",
          "--conditions=@dcpjs/source",
          CLI,
          "cp",
          join(run, "step-1"),
          dst,
          "--concurrency",
          "1",
        ],
        { stdio: "ignore" },
      );
      await new Promise((r) => setTimeout(r, 600 + Math.random() * 400));
      child.kill("SIGKILL");
      await exited(child);
      const sd = seededTarget();
      const outcome = await load(sd, { checkpointId: dst }).then(
        () => (whichSeed(sd, [2]) === 2 ? "complete" : "wrong"),
        (e: { failures?: { code: string }[] }) => e.failures?.[0]?.code,
      );
      expect(["complete", "INCOMPLETE_CHECKPOINT"]).toContain(outcome);
    }
  }, 120_000);
});
