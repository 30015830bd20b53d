import { execFile } from "node:child_process";
import { readdir, readFile, rename, rm, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import {
  emptyTensor,
  exportSafetensors,
  load,
  loadStateDictFromKeys,
  type StateDict,
  save,
  type Tensor,
} from "@dcpjs/core";
import { flattenStateDict } from "@dcpjs/core/extend";
import { COPY_PIECE_BYTES, copyCheckpoint } from "@dcpjs/core/ops";
import "@dcpjs/http";
import { describe, expect, it } from "vitest";
import { failureOf } from "../support/failure.js";
import { serverPerTest } from "../support/http-file-server.js";
import { runPeer, torchPython } from "../support/python-peer.js";
import { hexOf, randomTensor } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

const serve = serverPerTest();

/** Two 1.5 MiB tensors, a 10 MiB one (read in two pieces) and a small one. */
function state(): Record<string, Tensor> {
  return {
    "big.a": randomTensor("float32", [768, 512], 1),
    "big.b": randomTensor("float32", [768, 512], 2),
    huge: randomTensor("float32", [2560, 1024], 3),
    small: randomTensor("int64", [10], 4),
  };
}

/** A DCP checkpoint at `{root}/ckpt` exported as a sharded safetensors repository at `{root}/{repo}`. */
async function repository(root: string, repo: string, checksums: boolean): Promise<Record<string, Tensor>> {
  const sd = state();
  await save(sd, { checkpointId: join(root, "ckpt") });
  await exportSafetensors(join(root, "ckpt"), join(root, repo), { maxShardSize: 4 * 1024 * 1024, checksums });
  return sd;
}

async function expectLoads(checkpointId: string, sd: Record<string, Tensor>): Promise<void> {
  const got = await loadStateDictFromKeys({ checkpointId, keys: Object.keys(sd) });
  for (const [k, t] of Object.entries(sd)) expect(hexOf(got[k] as Tensor), k).toBe(hexOf(t));
}

const shardsOf = async (dir: string) => (await readdir(dir)).filter((f) => f.endsWith(".safetensors")).sort();

describe("dcp cp from http(s):// and hf://", () => {
  it("copies a safetensors repository over http:// to a folder: every shard verified by the sidecar, the index last, no .metadata", async () => {
    const root = await tempDir();
    const sd = await repository(root, "repo", true);
    const server = await serve({ root });
    const dst = join(await tempDir(), "copy");
    const seen: [number, number][] = [];
    const r = await copyCheckpoint(`${server.origin}/repo`, dst, {
      concurrency: 3,
      onProgress: (done, total) => seen.push([done, total]),
    });
    const shards = await shardsOf(join(root, "repo"));
    expect(shards.length).toBeGreaterThan(1);
    expect(r.layout).toBe("safetensors");
    expect(r.verifiedBy).toBe("checksums");
    expect(r.copied.sort()).toEqual(shards);
    expect(r.skipped).toEqual([]);
    expect(r.bytes).toBe(Object.values(sd).reduce((n, t) => n + t.data.byteLength, 0));
    expect(r.files.at(-1)).toBe("model.safetensors.index.json");
    expect(r.files).toContain("model.safetensors.crc32c.json");
    // byte-exact files, the same names; nothing invented
    expect((await readdir(dst)).sort()).toEqual((await readdir(join(root, "repo"))).sort());
    for (const f of await readdir(dst))
      expect(Buffer.compare(await readFile(join(dst, f)), await readFile(join(root, "repo", f))), f).toBe(0);
    await expectLoads(dst, sd);
    // bounded memory: every read is a ranged GET of at most one piece (the 10 MiB tensor takes two)
    const ranges = server.requests
      .map((q) => /^bytes=(\d+)-(\d+)$/.exec(String(q.headers.range ?? "")))
      .filter((m) => m !== null)
      .map((m) => Number(m[2]) - Number(m[1]) + 1);
    expect(ranges.length).toBeGreaterThan(0);
    expect(Math.max(...ranges)).toBeLessThanOrEqual(COPY_PIECE_BYTES);
    expect(server.requests.every((q) => q.method !== "GET" || q.headers.range !== undefined)).toBe(true);
    // progress never goes down and ends at the total
    for (let i = 1; i < seen.length; i++) expect(seen[i]![0]).toBeGreaterThanOrEqual(seen[i - 1]![0]);
    expect(seen.at(-1)![0]).toBe(seen.at(-1)![1]);
    // again: every shard found intact, nothing copied
    const again = await copyCheckpoint(`${server.origin}/repo`, dst);
    expect(again.copied).toEqual([]);
    expect(again.skipped.sort()).toEqual(shards);
    await expectLoads(dst, sd);
  });

  it("copies a single-file repository (model.safetensors, no index) found without a listing", async () => {
    const root = await tempDir();
    const sd = state();
    await save(sd, { checkpointId: join(root, "ckpt") });
    await exportSafetensors(join(root, "ckpt"), join(root, "single"));
    await rename(
      join(root, "single", "model-00001-of-00001.safetensors"),
      join(root, "single", "model.safetensors"),
    );
    await rm(join(root, "single", "model.safetensors.index.json"));
    const server = await serve({ root });
    const dst = join(await tempDir(), "copy");
    const r = await copyCheckpoint(`${server.origin}/single`, dst);
    expect(r).toMatchObject({
      layout: "safetensors",
      copied: ["model.safetensors"],
      files: [],
      verifiedBy: "headers",
    });
    expect(await readdir(dst)).toEqual(["model.safetensors"]);
    await expectLoads(dst, sd);
  });

  it("a flipped byte in a shard on the server fails CHECKSUM_MISMATCH naming the file; nothing is committed", async () => {
    const root = await tempDir();
    await repository(root, "repo", true);
    const [shard] = await shardsOf(join(root, "repo"));
    const bytes = await readFile(join(root, "repo", shard!));
    bytes[bytes.byteLength - 100]! ^= 0x04;
    await writeFile(join(root, "repo", shard!), bytes);
    const server = await serve({ root });
    const dst = join(await tempDir(), "copy");
    const error = await failureOf(copyCheckpoint(`${server.origin}/repo`, dst));
    expect(error.code).toBe("CHECKSUM_MISMATCH");
    expect(error.message).toContain(shard!);
    const left = await readdir(dst).catch(() => []);
    expect(left).not.toContain("model.safetensors.index.json");
    expect(left).not.toContain(".metadata");
    // what the copy wrote before it failed is removed: no partial repository to list either
    expect(left.filter((f) => f.endsWith(".safetensors"))).toEqual([]);
  });

  it("without a sidecar: a truncated shard fails naming it (its header's size); nothing is committed", async () => {
    const root = await tempDir();
    const sd = await repository(root, "repo", false);
    const server = await serve({ root });
    const whole = join(await tempDir(), "whole");
    const r = await copyCheckpoint(`${server.origin}/repo`, whole);
    expect(r.verifiedBy).toBe("headers");
    expect(r.files).toEqual(["model.safetensors.index.json"]);
    await expectLoads(whole, sd);
    const shards = await shardsOf(join(root, "repo"));
    const shard = shards.at(-1)!;
    const { size } = await import("node:fs/promises").then((m) => m.stat(join(root, "repo", shard)));
    await truncate(join(root, "repo", shard), size - 1000);
    const dst = join(await tempDir(), "copy");
    const error = await failureOf(copyCheckpoint(`${server.origin}/repo`, dst));
    expect(error.code).toBe("MALFORMED_METADATA");
    expect(error.message).toContain(shard);
    const left = await readdir(dst).catch(() => []);
    expect(left).not.toContain("model.safetensors.index.json");
    expect(left).not.toContain(".metadata");
  });

  it("copies hf://org/model with its config and tokenizer files (not other weights), pinned through the Hub's redirects", async () => {
    const root = await tempDir();
    const repo = join(root, "hub", "org", "model");
    const sd = state();
    await save(sd, { checkpointId: join(root, "ckpt") });
    await exportSafetensors(join(root, "ckpt"), repo, { maxShardSize: 4 * 1024 * 1024, checksums: true });
    await writeFile(join(repo, "config.json"), JSON.stringify({ model_type: "test" }));
    await writeFile(join(repo, "tokenizer.json"), JSON.stringify({ vocab: { a: 1 } }));
    await writeFile(join(repo, "pytorch_model.bin"), new Uint8Array(1000));
    const cdn = await serve({ root: join(root, "hub"), cdn: true });
    const hub = await serve({
      root: join(root, "hub"),
      hub: { commit: "0123456789abcdef0123456789abcdef01234567", cdnOrigin: cdn.origin },
    });
    const before = process.env.HF_ENDPOINT;
    process.env.HF_ENDPOINT = hub.origin;
    try {
      const dst = join(await tempDir(), "copy");
      const r = await copyCheckpoint("hf://org/model", dst);
      expect(r.files).toEqual(
        expect.arrayContaining(["config.json", "tokenizer.json", "model.safetensors.crc32c.json"]),
      );
      expect(r.files.at(-1)).toBe("model.safetensors.index.json");
      const got = (await readdir(dst)).sort();
      expect(got).not.toContain("pytorch_model.bin");
      expect(got).not.toContain(".metadata");
      expect(got).toEqual((await readdir(repo)).filter((f) => f !== "pytorch_model.bin").sort());
      expect(await readFile(join(dst, "config.json"), "utf8")).toBe(JSON.stringify({ model_type: "test" }));
      await expectLoads(dst, sd);
    } finally {
      if (before === undefined) delete process.env.HF_ENDPOINT;
      else process.env.HF_ENDPOINT = before;
    }
  });

  it("copies a DCP checkpoint over http:// as from a folder: .metadata last, byte-exact", async () => {
    const root = await tempDir();
    const sd: StateDict = { ...state(), step: 7 };
    await save(sd, { checkpointId: join(root, "ckpt") });
    const server = await serve({ root });
    const dst = join(await tempDir(), "copy");
    const r = await copyCheckpoint(`${server.origin}/ckpt`, dst);
    expect(r.layout).toBe("dcp");
    expect(r.files).toEqual([".metadata"]);
    expect(r.copied.length).toBeGreaterThan(0);
    const target: StateDict = {
      "big.a": emptyTensor("float32", [768, 512]),
      "big.b": emptyTensor("float32", [768, 512]),
      huge: emptyTensor("float32", [2560, 1024]),
      small: emptyTensor("int64", [10]),
      step: 0,
    };
    await load(target, { checkpointId: dst });
    expect(target.step).toBe(7);
    for (const k of ["big.a", "big.b", "huge", "small"])
      expect(hexOf(target[k] as Tensor), k).toBe(hexOf(sd[k] as Tensor));
  });

  it("copies a torch-written DCP checkpoint over http:// as from a folder: every entry bit-exact", async () => {
    await torchPython();
    const root = await tempDir();
    await runPeer("torch_peer.py", ["save", join(root, "ckpt"), "single"]);
    const expected = JSON.parse(await readFile(join(root, "expected-single.json"), "utf8")) as Record<
      string,
      { hex: string } | { value: unknown }
    >;
    const server = await serve({ root });
    const dst = join(await tempDir(), "copy");
    const r = await copyCheckpoint(`${server.origin}/ckpt`, dst);
    expect(r).toMatchObject({ layout: "dcp", files: [".metadata"] });
    expect(
      Buffer.compare(await readFile(join(dst, ".metadata")), await readFile(join(root, "ckpt", ".metadata"))),
    ).toBe(0);
    const flat = flattenStateDict(await loadStateDictFromKeys({ checkpointId: dst })).flat;
    for (const [fqn, e] of Object.entries(expected)) {
      if ("hex" in e) expect(hexOf(flat.get(fqn) as Tensor), fqn).toBe(e.hex);
      else expect(flat.get(fqn), fqn).toEqual(e.value);
    }
  }, 600_000);

  it("an aborted copy throws ABORTED and commits nothing", async () => {
    const root = await tempDir();
    await repository(root, "repo", true);
    const server = await serve({ root });
    const dst = join(await tempDir(), "copy");
    const controller = new AbortController();
    const error = await failureOf(
      copyCheckpoint(`${server.origin}/repo`, dst, {
        concurrency: 1,
        signal: controller.signal,
        onProgress: (done) => {
          if (done > 0) controller.abort();
        },
      }),
    );
    expect(error.code).toBe("ABORTED");
    const left = await readdir(dst).catch(() => []);
    expect(left).not.toContain("model.safetensors.index.json");
    expect(left.filter((f) => f.endsWith(".safetensors"))).toEqual([]);
  });

  it("dcp cp copies an http:// repository and says how it verified it; its help names http(s):// and hf://", async () => {
    const CLI = fileURLToPath(new URL("../../packages/cli/src/cli.ts", import.meta.url));
    const dcp = (...args: string[]) =>
      promisify(execFile)(process.execPath, ["--import", "tsx", "--conditions=@dcpjs/source", CLI, ...args]);
    const help = (await dcp("cp", "--help")).stdout;
    expect(help).toContain("http(s)://");
    expect(help).toContain("hf://");
    const root = await tempDir();
    const sd = await repository(root, "repo", true);
    const server = await serve({ root });
    const dst = join(await tempDir(), "copy");
    const r = JSON.parse((await dcp("cp", `${server.origin}/repo`, dst, "--json")).stdout) as {
      layout: string;
      verifiedBy: string;
      copied: string[];
    };
    expect(r).toMatchObject({ layout: "safetensors", verifiedBy: "checksums" });
    expect(r.copied.sort()).toEqual(await shardsOf(join(root, "repo")));
    await expectLoads(dst, sd);
    expect((await dcp("cp", `${server.origin}/repo`, dst)).stdout).toMatch(
      /copied 0 data files .*verified by checksums.*skipped \d+ already intact, 2 other files, committed/,
    );
  });
});
