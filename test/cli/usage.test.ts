import { execFile } from "node:child_process";
import { readFile, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { createStorageReader, exportSafetensors, FileSystemWriter, save, tensor } from "@dcpjs/core";
import { describe, expect, it } from "vitest";
import { saveShards } from "../support/ranks.js";
import { randomTensor } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

const CLI = fileURLToPath(new URL("../../packages/cli/src/cli.ts", import.meta.url));

/** Runs `dcp`; resolves with its exit code, stdout and stderr (a failing exit is not an error here). */
function dcp(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return promisify(execFile)(process.execPath, [
    "--import",
    "tsx",
    "--conditions=@dcpjs/source",
    CLI,
    ...args,
  ]).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({
      code: e.code,
      stdout: e.stdout,
      stderr: e.stderr,
    }),
  );
}

const lines = (text: string) => text.trimEnd().split("\n");

describe("dcp usage errors", () => {
  it.each([
    [["ls"], "missing required argument 'path'", "(dcp ls --help for usage)"],
    [["frobnicate"], "unknown command 'frobnicate'", "(dcp --help for usage)"],
    [["cp", "a"], "missing required argument 'dst'", "(dcp cp --help for usage)"],
    [["gc", "x", "--grace", "-1"], "Expected an integer >= 0, got -1", "(dcp gc --help for usage)"],
    [["ls", "x", "--depth", "0"], "Expected an integer >= 1, got 0", "(dcp ls --help for usage)"],
    [
      ["verify", "x", "--no-such-option"],
      "unknown option '--no-such-option'",
      "(dcp verify --help for usage)",
    ],
  ])("dcp %j exits 2 with one message and a one-line hint, not the help", async (args, message, hint) => {
    const r = await dcp(args);
    expect(r.code).toBe(2);
    expect(lines(r.stderr)).toHaveLength(2);
    expect(lines(r.stderr)[0]).toMatch(/^dcp: /);
    expect(lines(r.stderr)[0]).toContain(message);
    expect(lines(r.stderr)[1]).toBe(hint);
    expect(r.stderr).not.toMatch(/Usage:/);
    expect(r.stdout).toBe("");
  });

  it("--version prints the package's version; --help exits 0 and says how to silence the AWS SDK's warning", async () => {
    const pkg = JSON.parse(
      await readFile(new URL("../../packages/cli/package.json", import.meta.url), "utf8"),
    );
    const v = await dcp(["--version"]);
    expect(v).toMatchObject({ code: 0, stdout: `${pkg.version}\n` });
    const help = await dcp(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true/);
  });

  it("a known error is one line with its code, exit 1 — never a stack", async () => {
    const missing = join(await tempDir(), "nothing");
    const r = await dcp(["verify", missing]);
    expect(r.code).toBe(1);
    expect(lines(r.stderr)).toEqual([
      expect.stringMatching(/^dcp: INCOMPLETE_CHECKPOINT: Expected a committed/),
    ]);
  });

  it("--cache-dir naming a file is a bad argument (exit 2, one line), not a raw ENOTDIR", async () => {
    const dir = await tempDir();
    await save({ step: 1 }, { checkpointId: join(dir, "ckpt") });
    await writeFile(join(dir, "a-file"), "x");
    for (const args of [
      ["verify", join(dir, "ckpt"), "--cache-dir", join(dir, "a-file")],
      ["cp", join(dir, "ckpt"), join(dir, "copy"), "--cache-dir", join(dir, "a-file")],
    ]) {
      const r = await dcp(args);
      expect(r.code).toBe(2);
      expect(lines(r.stderr)).toEqual([
        `dcp: INVALID_ARGUMENT: Expected --cache-dir to be a folder (or a path to create one), got a file: ${join(dir, "a-file")}`,
      ]);
    }
  });
});

describe("dcp gc --grace 0", () => {
  it("collects now: a stray data file written a moment ago is removed", async () => {
    const ckpt = join(await tempDir(), "ckpt");
    await save({ w: tensor("float32", [2], new Float32Array([1, 2])) }, { checkpointId: ckpt });
    const stray = join(ckpt, "__0_0.0123456789ab.distcp");
    await writeFile(stray, new Uint8Array(384));
    const now = Date.now() / 1000;
    await utimes(stray, now, now);
    const r = await dcp(["gc", ckpt, "--grace", "0"]);
    expect(r.code).toBe(0);
    expect(lines(r.stdout)).toEqual([
      "removed __0_0.0123456789ab.distcp",
      "freed 384 B in 1 entry; 0 multipart uploads aborted",
    ]);
  });
});

describe("dcp's sizes and counts", () => {
  it("ls: 384 B, 4.1 KB, 1 rank / 4 ranks, 1 entry / 2 entries; rm: 2 files", async () => {
    const run = await tempDir();
    await save({ w: tensor("float32", [96], new Float32Array(96)) }, { checkpointId: join(run, "one") }); // 384 bytes
    await saveShards(
      { a: randomTensor("float32", [64, 8], 1), b: randomTensor("float32", [64, 8], 2) },
      join(run, "four"),
      4,
    );
    const ls = lines((await dcp(["ls", run])).stdout);
    const one = ls.find((l) => l.endsWith("/one"))!;
    const four = ls.find((l) => l.endsWith("/four"))!;
    expect(one).toMatch(/ 1 rank +1 entry +384 B /);
    expect(four).toMatch(/ 4 ranks +2 entries +4\.1 KB /);
    expect((await dcp(["rm", join(run, "one")])).stdout).toMatch(/^removed 2 files \(\d+ B\) from /);
  });

  it("inspect's totals: 1 entry (1 tensor, 0 values), 384 B in 1 data file", async () => {
    const ckpt = join(await tempDir(), "ckpt");
    await save({ w: tensor("float32", [96], new Float32Array(96)) }, { checkpointId: ckpt });
    expect((await dcp(["inspect", ckpt])).stdout).toMatch(
      /\n1 entry \(1 tensor, 0 values\), 384 B in 1 data file; format dcpjs/,
    );
  });
});

describe("dcp verify says what checked each entry", () => {
  const state = () => ({ w: randomTensor("float32", [32, 32], 3), step: 7 });

  it("dcpjs items: their CRC-32", async () => {
    const ckpt = join(await tempDir(), "ckpt");
    await save(state(), { checkpointId: ckpt });
    const r = await dcp(["verify", ckpt, "--entries"]);
    expect(lines(r.stdout)).toEqual([
      "fqn   checked by  result",
      "w     CRC-32      ok",
      "step  CRC-32      ok",
      "2 entries checked, 0 damaged: 2 by CRC-32",
    ]);
  });

  it("PyTorch items: the zip CRC-32 of every member, which catches a flipped byte", async () => {
    const ckpt = join(await tempDir(), "torch");
    await save(state(), { storageWriter: new FileSystemWriter({ path: ckpt, format: "torch" }) });
    const sound = await dcp(["verify", ckpt, "--json"]);
    expect(JSON.parse(sound.stdout)).toMatchObject({
      checked: 2,
      unchecksummed: 0,
      checkedBy: { "zip CRC-32": 2 },
      damaged: [],
    });
    expect(lines(sound.stdout).length).toBeGreaterThan(1);
    expect(lines((await dcp(["verify", ckpt])).stdout)).toEqual([
      "2 entries checked, 0 damaged: 2 by zip CRC-32",
    ]);

    const md = await (await createStorageReader(ckpt)).readMetadata();
    const info = [...md.storageData].find(([k]) => k.startsWith("w"))![1];
    const file = join(ckpt, info.relativePath);
    const bytes = await readFile(file);
    bytes[info.offset + Math.floor(info.length / 2)]! ^= 0x10; // inside the tensor's data member
    await writeFile(file, bytes);
    const damaged = await dcp(["verify", ckpt, "--entries"]);
    expect(damaged.code).toBe(1);
    expect(damaged.stderr).toMatch(/^damaged: w: /);
    expect(lines(damaged.stdout)).toEqual([
      "fqn   checked by  result",
      "w     zip CRC-32  damaged",
      "step  zip CRC-32  ok",
      "2 entries checked, 1 damaged: 2 by zip CRC-32",
    ]);
  });

  it("safetensors: length only, or the sidecar's CRC-32C when exported with --checksums", async () => {
    const dir = await tempDir();
    await save({ w: randomTensor("float32", [8, 8], 4) }, { checkpointId: join(dir, "src") });
    await exportSafetensors(join(dir, "src"), join(dir, "plain"));
    await exportSafetensors(join(dir, "src"), join(dir, "summed"), { checksums: true });
    expect(lines((await dcp(["verify", join(dir, "plain")])).stdout)).toEqual([
      "1 entry checked, 0 damaged: 1 by length only",
    ]);
    expect(lines((await dcp(["verify", join(dir, "summed")])).stdout)).toEqual([
      "1 entry checked, 0 damaged: 1 by sidecar CRC-32C",
    ]);
  });
});
