import { execFile } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { tempDir } from "../support/tmp.js";

const DEMO = fileURLToPath(new URL("../../packages/demo/src/cli.ts", import.meta.url));

describe("dcp-demo --train (TF.js training, killed and resumed in a new process)", () => {
  it("commits each save before the next despite synchronous steps, resumes from step 10 after a kill at 12, bit for bit", async () => {
    const to = join(await tempDir(), "train");
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["--import", "tsx", "--conditions=@dcpjs/source", DEMO, "--train", "--to", to, "--no-progress"],
      { maxBuffer: 16 << 20 },
    );
    expect(stdout).toMatch(/300 ms synchronous steps, asyncSave every 5 steps/);
    expect(stdout).toMatch(/killed after step 12/);
    expect(stdout).toMatch(/step 5 committed, step 10 committed/);
    // Each save committed on asyncSave's own thread while the steps held the main thread: it was
    // committed, and its `completed` settled, before the next save was requested (nothing waited).
    expect(stdout).toMatch(/every save had committed before the next was requested/);
    expect(stdout).toMatch(/resumed from\s+\S+\/step-000010 \(step 10 of 20\)/);
    expect(stdout).toMatch(/OK: after the crash and resume, every loss and every weight matches/);
  });
});
