import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { emptyTensor, latestCheckpoint, listCheckpoints, load, save, type Tensor, tensor } from "@dcpjs/core";
import { S3FileSystem } from "@dcpjs/s3";
import { beforeAll, describe, expect, it } from "vitest";
import { freshUri, s3Env, testClient } from "../support/s3.js";
import { tempDir } from "../support/tmp.js";

const CLI = fileURLToPath(new URL("../../packages/cli/src/cli.ts", import.meta.url));

beforeAll(() => {
  Object.assign(process.env, s3Env()); // the registered s3:// backend builds its client from these
});

/** Saves `runs/b/ckpt/step-{5,10,15,20}` under a fresh prefix (within about a second: S3's times tie). */
async function nestedRun(): Promise<string> {
  const root = freshUri("runs");
  for (const step of [5, 10, 15, 20])
    await save(
      { w: tensor("float32", [2], new Float32Array([step, -step])), step },
      { checkpointId: `${root}/b/ckpt/step-${step}` },
    );
  return root;
}

describe("listCheckpoints and latestCheckpoint on S3 (the registered s3:// backend)", () => {
  it("find checkpoints nested under a prefix, newest first by commit time and then step", async () => {
    const root = await nestedRun();
    const fs = new S3FileSystem({ client: testClient() });
    const half = `${root}/b/ckpt/step-25`;
    const w = await fs.createStream(`${half}/__0_0.0123456789ab.distcp`, "wb"); // a killed save's file
    await w.write(new Uint8Array(10));
    await w.close();

    expect(await listCheckpoints(root)).toEqual([]); // one level: root and root/b only
    const found = await listCheckpoints(root, { recursive: true });
    expect(found.map((c) => c.id)).toEqual([20, 15, 10, 5].map((s) => `${root}/b/ckpt/step-${s}`));
    expect(found[0]).toMatchObject({ state: "committed", format: "dcpjs", entries: 2, step: 20 });
    expect(found[0]!.modifiedMs).toBeGreaterThan(0);

    const latest = await latestCheckpoint(`${root}/b/ckpt`);
    expect(latest).toBe(`${root}/b/ckpt/step-20`);
    const sd = { w: emptyTensor("float32", [2]) as Tensor, step: 0 };
    await load(sd, { checkpointId: latest! });
    expect(sd.step).toBe(20);
    const all = await listCheckpoints(`${root}/b/ckpt`, { includeIncomplete: true });
    expect(all.filter((c) => c.state === "incomplete").map((c) => c.id)).toEqual([half]);
  });

  it("dcp ls s3://… finds them under the prefix, and names the prefixes it searched when there are none", async () => {
    const root = await nestedRun();
    const dcp = (args: string[]) =>
      promisify(execFile)(process.execPath, ["--import", "tsx", "--conditions=@dcpjs/source", CLI, ...args], {
        env: { ...process.env, ...s3Env() },
      });
    const { stdout } = await dcp(["ls", root]);
    expect(
      stdout
        .trim()
        .split("\n")
        .map((l) => l.split(/\s+/).at(-1)),
    ).toEqual([20, 15, 10, 5].map((s) => `${root}/b/ckpt/step-${s}`));
    const none = await dcp(["ls", root, "--depth", "2"]);
    expect(none.stdout.trim()).toBe(
      `no checkpoints at or under ${root} (searched 3 folders, 2 levels deep: ${root}, ${root}/b, ${root}/b/ckpt)`,
    );
  });
});

describe("dcp on S3: its own process", () => {
  const dcp = (args: string[], env: NodeJS.ProcessEnv) =>
    promisify(execFile)(process.execPath, ["--import", "tsx", "--conditions=@dcpjs/source", CLI, ...args], {
      env,
    }).then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (e: { code: number; stdout: string; stderr: string }) => e,
    );

  it("prints no AWS SDK Node-version warning, though the environment does not silence it", async () => {
    const uri = freshUri("quiet");
    await save({ step: 1 }, { checkpointId: uri });
    const { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: _, ...env } = { ...process.env, ...s3Env() };
    const r = await dcp(["ls", uri], env);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^committed/);
    expect(r.stderr).toBe(""); // on Node < 22 the SDK would print its NodeVersionSupportWarning here
  });

  it("an error from below dcpjs (the read cache's ENOTDIR) is one line, exit 1, never a stack", async () => {
    const uri = freshUri("cache");
    await save({ step: 1 }, { checkpointId: uri });
    const cacheDir = await tempDir();
    await writeFile(join(cacheDir, "index-v5"), "not a folder"); // cacache's index folder
    const r = await dcp(["verify", uri, "--cache-dir", cacheDir], { ...process.env, ...s3Env() });
    expect(r.code).toBe(1);
    expect(r.stderr.trimEnd().split("\n")).toEqual([expect.stringMatching(/^dcp: .*ENOTDIR/)]);
  });
});
