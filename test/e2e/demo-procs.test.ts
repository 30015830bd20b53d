import { execFile } from "node:child_process";
import { copyFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { humanModelsDir } from "@dcpjs/demo-kit";
import { describe, expect, it } from "vitest";
import { redisUrl } from "../support/redis.js";
import { tempDir } from "../support/tmp.js";

const DEMO = fileURLToPath(new URL("../../packages/demo/src/cli.ts", import.meta.url));

describe("dcp-demo --procs (ranks as real processes meeting in Redis)", () => {
  it("saves with 3 processes, loads with 2 and 1, and verifies every tensor", async () => {
    const models = await tempDir("models-");
    for (const name of ["age", "emotion"]) {
      for (const ext of [".json", ".bin"])
        await copyFile(join(humanModelsDir(), name + ext), join(models, name + ext));
    }
    const out = join(await tempDir(), "demo");
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [
        "--import",
        "tsx",
        "--conditions=@dcpjs/source",
        DEMO,
        "--procs",
        "3",
        "--load-ranks",
        "2",
        "--models",
        models,
        "--to",
        out,
        "--redis",
        redisUrl(),
        "--no-progress",
      ],
      { maxBuffer: 16 << 20 },
    );
    expect(stdout).toMatch(/ranks: {2}separate processes, meeting in Redis/);
    expect(stdout).toMatch(/save: {3}3 ranks .*: 3 data files \+ \.metadata/);
    expect(stdout).toMatch(
      /OK: all \d+ source tensors, the optimizer state and the values match bit for bit after the 3→2 and 3→1 loads/,
    );
  });
});
