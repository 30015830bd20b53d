import { execFile, spawn } from "node:child_process";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import {
  CheckpointError,
  type ConvertBatch,
  type ConvertFormat,
  convertCheckpoint,
  loadStateDictFromKeys,
  type StateDict,
  save,
  type Tensor,
} from "@dcpjs/core";
import { describe, expect, it } from "vitest";
import { exited } from "../support/child.js";
import { hexOf, randomTensor } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

const MiB = 1024 * 1024;

/** Tensors of several dtypes and sizes (200 B to 64 KiB), nested, for batches of several entries. */
function tensors(): StateDict {
  return {
    model: {
      embed: randomTensor("float32", [128, 128], 1),
      norm: randomTensor("bfloat16", [100], 2),
      layers: { w: randomTensor("float16", [64, 96], 3), idx: randomTensor("int64", [300], 4) },
    },
    mask: randomTensor("bool", [17, 3], 5),
    small: randomTensor("int8", [200], 6),
  };
}

/** Every tensor of a loaded state dict by fqn, as hex; values as they are. */
function flat(sd: StateDict, prefix = "", out: Record<string, unknown> = {}): Record<string, unknown> {
  for (const [k, v] of Object.entries(sd as Record<string, unknown>)) {
    const fqn = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === "object" && "dtype" in v && "shape" in v) {
      const t = v as Tensor;
      out[fqn] = `${t.dtype}[${t.shape.join(",")}]:${hexOf(t)}`;
    } else if (v && typeof v === "object" && !(v instanceof Uint8Array) && !Array.isArray(v))
      flat(v as StateDict, fqn, out);
    else out[fqn] = v;
  }
  return out;
}

describe("convertCheckpoint streams in batches", () => {
  it("round-trips bit-exact in every direction among dcpjs, torch and safetensors, in several batches", async () => {
    const root = await tempDir();
    const src = join(root, "dcpjs");
    await save(tensors(), { checkpointId: src });
    const want = flat(await loadStateDictFromKeys({ checkpointId: src }));
    // Every direction: dcpjs → torch → safetensors → dcpjs → safetensors → torch → dcpjs.
    const chain: ConvertFormat[] = ["torch", "safetensors", "dcpjs", "safetensors", "torch", "dcpjs"];
    let from = src;
    for (const [i, to] of chain.entries()) {
      const dst = join(root, `${i}-${to}`);
      const batches: ConvertBatch[] = [];
      const s = await convertCheckpoint(from, dst, {
        to,
        windowBytes: 70_000,
        onBatch: (b) => {
          batches.push(b);
        },
      });
      // 64 KiB + 12 KiB + … : more than one batch, each within the window or one tensor alone
      expect(batches.length).toBeGreaterThan(1);
      expect(s.batches).toBe(batches.length);
      for (const b of batches) expect(b.bytes <= 70_000 || b.keys.length === 1).toBe(true);
      expect(batches.flatMap((b) => b.keys).sort()).toEqual(Object.keys(want).sort());
      const got = flat(await loadStateDictFromKeys({ checkpointId: dst }));
      expect(got, `${from} → ${to}`).toEqual(want);
      from = dst;
    }
  });

  it("keeps non-tensor values through dcpjs and torch outputs", async () => {
    const root = await tempDir();
    const src = join(root, "src");
    await save({ ...tensors(), step: 100, name: "run-7", lr: [0.1, 0.01] }, { checkpointId: src });
    const want = flat(await loadStateDictFromKeys({ checkpointId: src }));
    const torch = join(root, "torch");
    await convertCheckpoint(src, torch, { to: "torch", windowBytes: 1 });
    // one save in batches: batch b's files are __{b}_{n}.{saveTag}.distcp, one tag, one .metadata
    const files = (await readdir(torch)).filter((f) => f.endsWith(".distcp")).sort();
    const tags = new Set(files.map((f) => /^__\d+_0\.([0-9a-f]{12})\.distcp$/.exec(f)?.[1]));
    expect(tags.size).toBe(1);
    expect([...tags][0]).toBeDefined();
    expect(files.map((f) => Number(/^__(\d+)_/.exec(f)![1])).sort((a, b) => a - b)).toEqual(
      Array.from({ length: files.length }, (_, i) => i),
    );
    const back = join(root, "back");
    await convertCheckpoint(torch, back, { windowBytes: 1 });
    expect(flat(await loadStateDictFromKeys({ checkpointId: back }))).toEqual(want);
  });

  it("commits nothing when a batch fails: no .metadata, and the batches written are removed", async () => {
    const root = await tempDir();
    const src = join(root, "src");
    await save(tensors(), { checkpointId: src });
    const dst = join(root, "dst");
    const abort = new AbortController();
    const failed = await convertCheckpoint(src, dst, {
      to: "torch",
      windowBytes: 1,
      signal: abort.signal,
      onBatch: (b) => {
        if (b.index === 2) abort.abort();
      },
    }).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(CheckpointError);
    expect((failed as CheckpointError).code).toBe("ABORTED");
    expect((await readdir(dst)).filter((f) => f.endsWith(".distcp") || f === ".metadata")).toEqual([]);
  });

  it("a dcp convert killed at any point leaves nothing loadable, or the whole checkpoint", async () => {
    const root = await tempDir();
    const src = join(root, "src");
    const sd: StateDict = {};
    for (let i = 0; i < 64; i++) sd[`w${i}`] = randomTensor("float32", [256, 256], i + 1); // 256 KiB each
    await save(sd, { checkpointId: src });
    const want = flat(await loadStateDictFromKeys({ checkpointId: src }));
    const CLI = fileURLToPath(new URL("../../packages/cli/src/cli.ts", import.meta.url));
    const outcomes: string[] = [];
    for (let trial = 0; trial < 4; trial++) {
      const dst = join(root, `dst-${trial}`);
      const child = spawn(
        process.execPath,
        [
          "--import",
          "tsx",
          "--conditions=@dcpjs/source",
          CLI,
          "convert",
          src,
          dst,
          "--to",
          "torch",
          "--window",
          "256KiB",
        ],
        { stdio: "ignore" },
      );
      // from before the first batch to after the commit (the whole run takes about 1 s here)
      await new Promise((r) => setTimeout(r, 300 + trial * 250 + Math.random() * 250));
      child.kill("SIGKILL");
      await exited(child);
      const outcome = await loadStateDictFromKeys({ checkpointId: dst }).then(
        (got) => (JSON.stringify(flat(got)) === JSON.stringify(want) ? "complete" : "wrong"),
        (e: { failures?: { code: string }[]; code?: string }) => e.failures?.[0]?.code ?? e.code ?? "?",
      );
      outcomes.push(outcome);
    }
    for (const o of outcomes) expect(["complete", "INCOMPLETE_CHECKPOINT"]).toContain(o);
  }, 120_000);

  it("refuses a window that is not an integer ≥ 1", async () => {
    const e = await convertCheckpoint("/nowhere", "/nowhere-2", { windowBytes: 0 }).catch((x: unknown) => x);
    expect((e as CheckpointError).code).toBe("INVALID_ARGUMENT");
  });

  it.each(["torch", "dcpjs", "safetensors"] as const)(
    "holds at most the window plus the largest tensor (8 × 1 MiB, 1 MiB window, to %s; arrayBuffers after a collection per batch)",
    async (to) => {
      const root = await tempDir();
      const src = join(root, "src");
      const sd: StateDict = {};
      for (let i = 0; i < 8; i++) sd[`w${i}`] = randomTensor("float32", [256, 1024], i + 1);
      // torch source for a dcpjs output, dcpjs source otherwise
      await save(sd, { checkpointId: src });
      let from = src;
      if (to === "dcpjs") {
        from = join(root, "torch-src");
        await convertCheckpoint(src, from, { to: "torch" });
      }
      const child = fileURLToPath(new URL("../support/convert-memory-child.ts", import.meta.url));
      const { stdout } = await promisify(execFile)(process.execPath, [
        "--expose-gc",
        "--import",
        "tsx",
        "--conditions=@dcpjs/source",
        child,
        from,
        join(root, "out"),
        to,
        String(MiB),
      ]);
      const { most, batches } = JSON.parse(stdout.trim().split("\n").at(-1)!) as {
        most: number;
        batches: number[];
      };
      expect(batches).toEqual(Array(8).fill(MiB));
      // (a torch source's items are read in place: no staging buffer either)
      expect(most).toBeLessThanOrEqual(MiB + MiB);
      const got = flat(await loadStateDictFromKeys({ checkpointId: join(root, "out") }));
      expect(got).toEqual(flat(await loadStateDictFromKeys({ checkpointId: src })));
    },
  );
});

describe("dcp convert", () => {
  const CLI = fileURLToPath(new URL("../../packages/cli/src/cli.ts", import.meta.url));
  const dcp = (args: string[]) =>
    promisify(execFile)(process.execPath, ["--import", "tsx", "--conditions=@dcpjs/source", CLI, ...args]);

  it("--to safetensors and --window: converts in batches, bit-exact; --help states the window's default", async () => {
    const root = await tempDir();
    const src = join(root, "src");
    await save(tensors(), { checkpointId: src });
    const st = join(root, "st");
    expect((await dcp(["convert", src, st, "--to", "safetensors", "--window", "4KB"])).stdout).toMatch(
      /converted 6 entries .* into the safetensors checkpoint/,
    );
    const back = join(root, "back");
    await dcp(["convert", st, back, "--window", "4KB"]);
    expect(flat(await loadStateDictFromKeys({ checkpointId: back }))).toEqual(
      flat(await loadStateDictFromKeys({ checkpointId: src })),
    );
    expect((await readdir(back)).filter((f) => f.endsWith(".distcp")).length).toBeGreaterThan(1);
    const help = (await dcp(["convert", "--help"])).stdout;
    expect(help).toMatch(/--window <size>/);
    expect(help).toMatch(/default 256MiB/);
    const bad = await dcp(["convert", src, join(root, "x"), "--to", "onnx"]).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect((bad as { stderr: string }).stderr).toMatch(/Expected --to dcpjs, torch or safetensors, got onnx/);
  });
});
