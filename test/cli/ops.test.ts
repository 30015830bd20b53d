import { execFile, spawn } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { FileSystemWriter, LocalFileSystem, load, save } from "@dcpjs/core";
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
