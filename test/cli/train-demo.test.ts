import { execFile } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { tempDir } from "../support/tmp.js";

const DEMO = fileURLToPath(new URL("../../packages/demo/src/cli.ts", import.meta.url));

describe("dcp-demo --train (TF.js training, killed and resumed in a new process)", () => {
  it("resumes from the newest committed checkpoint and matches the uninterrupted run bit for bit", async () => {
    const to = join(await tempDir(), "train");
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["--import", "tsx", "--conditions=@dcpjs/source", DEMO, "--train", "--to", to, "--no-progress"],
      { maxBuffer: 16 << 20 },
    );
    expect(stdout).toMatch(/killed after step 12/);
    expect(stdout).toMatch(/step 5 committed/);
    expect(stdout).toMatch(/resumed from\s+\S+\/step-0000(05|10) \(step (5|10) of 20\)/);
    expect(stdout).toMatch(/OK: after the crash and resume, every loss and every weight matches/);
  });
});
