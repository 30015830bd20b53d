// The dcp commands on incremental checkpoints (#25): rm refuses a base (exit 1, naming the
// referrers) and --force says what it breaks; cp --keep-refs needs the base copied first; gc
// --keep-last keeps the base; verify and convert read through the references.

import { execFile } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { save } from "@dcpjs/core";
import { describe, expect, it } from "vitest";
import { loadsAs } from "../support/incremental-fixture.js";
import { seededState } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

const CLI = fileURLToPath(new URL("../../packages/cli/src/cli.ts", import.meta.url));
const dcp = (args: string[]) =>
  promisify(execFile)(process.execPath, [
    "--import",
    "tsx",
    "--conditions=@dcpjs/source",
    CLI,
    ...args,
  ]).catch((e: { code: number; stdout: string; stderr: string }) => e);

describe("dcp rm / gc / cp / verify / convert with references", () => {
  it("rm refuses a base, cp --keep-refs needs the base copied, gc keeps it, --force names what it breaks", async () => {
    const run = await tempDir();
    const [a, b] = [join(run, "a"), join(run, "b")];
    const frozen = seededState(1);
    await save(frozen, { checkpointId: a });
    // b changes everything but w0…w7: those reference a's files.
    const sd = seededState(2);
    for (let i = 0; i < 8; i++) sd[`w${i}`] = frozen[`w${i}`]!;
    await save(sd, { checkpointId: b, base: a });
    expect(await loadsAs(b, 2, 1)).toBe(true);

    const refused = await dcp(["rm", a]);
    expect(refused).toMatchObject({ code: 1 });
    expect((refused as { stderr: string }).stderr).toMatch(/CHECKPOINT_REFERENCED.*\/b/);

    const copy = await tempDir();
    expect(await dcp(["cp", "--keep-refs", b, join(copy, "b"), "--json"])).toMatchObject({ code: 2 });
    expect("code" in (await dcp(["cp", a, join(copy, "a"), "--json"]))).toBe(false);
    const kept = JSON.parse((await dcp(["cp", "--keep-refs", b, join(copy, "b"), "--json"])).stdout);
    expect(kept.bases).toEqual(["a"]);
    expect(await loadsAs(join(copy, "b"), 2, 1)).toBe(true);

    const gc = JSON.parse((await dcp(["gc", run, "--keep-last", "1", "--grace", "0", "--json"])).stdout);
    expect(gc.removed).toEqual([]);
    const verified = JSON.parse((await dcp(["verify", b, "--json"])).stdout);
    expect(verified).toMatchObject({ checked: 17, damaged: [] });
    const out = join(await tempDir(), "torch");
    expect("code" in (await dcp(["convert", b, out, "--to", "torch"]))).toBe(false);
    expect(await loadsAs(out, 2, 1)).toBe(true);

    const forced = await dcp(["rm", "--force", a]);
    expect((forced as { stdout: string }).stdout).toMatch(/broke 1 checkpoint that referenced it.*\/b/);
  }, 120_000);
});
