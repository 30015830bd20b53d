import { execFile } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { save, tensor } from "@dcpjs/core";
import { METADATA_FILE } from "@dcpjs/core/extend";
import { describe, expect, it } from "vitest";
import { tempDir } from "../support/tmp.js";

const CLI = fileURLToPath(new URL("../../packages/cli/src/cli.ts", import.meta.url));
// tsx by its file URL: the command runs in another folder (relative paths are the point).
const TSX = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;
const dcp = (args: string[], cwd: string) =>
  promisify(execFile)(process.execPath, ["--import", TSX, "--conditions=@dcpjs/source", CLI, ...args], {
    cwd,
  });

describe("dcp ls", () => {
  it("finds checkpoints nested below the path (runs/b/ckpt/step-N), newest first", async () => {
    const dir = await tempDir();
    await mkdir(join(dir, "runs", "a"), { recursive: true });
    for (const step of [5, 10, 15, 20])
      await save(
        { w: tensor("float32", [2], new Float32Array([step, 0])), step },
        { checkpointId: join(dir, "runs", "b", "ckpt", `step-${step}`) },
      );
    const { stdout } = await dcp(["ls", "./runs"], dir);
    const ids = stdout
      .trim()
      .split("\n")
      .map((l) => l.split(/\s+/).at(-1));
    expect(ids).toEqual([
      "runs/b/ckpt/step-20",
      "runs/b/ckpt/step-15",
      "runs/b/ckpt/step-10",
      "runs/b/ckpt/step-5",
    ]);
    const json = JSON.parse((await dcp(["ls", "runs", "--json"], dir)).stdout) as {
      id: string;
      state: string;
    }[];
    expect(json.map((c) => c.state)).toEqual(["committed", "committed", "committed", "committed"]);
  });

  it("shows a damaged checkpoint as damaged, with its code, and lists the others", async () => {
    const dir = await tempDir();
    for (const step of [1, 2])
      await save({ w: tensor("float32", [1]), step }, { checkpointId: join(dir, "run", `step-${step}`) });
    await writeFile(join(dir, "run", "step-2", METADATA_FILE), "not a .metadata");
    const lines = (await dcp(["ls", "run"], dir)).stdout.trim().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines.find((l) => l.includes("step-2"))).toMatch(
      /^damaged .*run\/step-2 {2}\(MALFORMED_METADATA\)$/,
    );
    expect(lines.find((l) => l.includes("step-1"))).toMatch(/^committed .*run\/step-1$/);
    const json = JSON.parse((await dcp(["ls", "run", "--json"], dir)).stdout) as {
      id: string;
      state: string;
      error?: { code: string };
    }[];
    expect(json.find((c) => c.id.endsWith("step-2"))).toMatchObject({
      state: "damaged",
      error: { code: "MALFORMED_METADATA" },
    });
  });

  it("says which folders it searched when it finds none (and how deep)", async () => {
    const dir = await tempDir();
    await mkdir(join(dir, "runs", "a"), { recursive: true });
    await mkdir(join(dir, "runs", "b", "deep", "deeper"), { recursive: true });
    await save({ step: 1 }, { checkpointId: join(dir, "runs", "b", "deep", "deeper", "ckpt") });
    const { stdout } = await dcp(["ls", "runs", "--depth", "2"], dir);
    expect(stdout.trim()).toBe(
      "no checkpoints at or under runs (searched 4 folders, 2 levels deep: runs, runs/a, runs/b, runs/b/deep)",
    );
    // 4 levels below: found at the default depth
    expect((await dcp(["ls", "runs"], dir)).stdout).toMatch(/runs\/b\/deep\/deeper\/ckpt\n$/);
  });
});
