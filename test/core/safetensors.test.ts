import { execFile } from "node:child_process";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import {
  CheckpointError,
  createLocalProcessGroups,
  createStorageReader,
  emptyTensor,
  exportSafetensors,
  load,
  loadStateDictFromKeys,
  MetadataError,
  type StateDict,
  save,
  shardTensor,
  type Tensor,
} from "@dcpjs/core";
import { describeCheckpoint, verifyCheckpoint } from "@dcpjs/core/ops";
import { parseSafetensorsHeader, SAFETENSORS_INDEX_FILE } from "@dcpjs/core/testing";
import { beforeAll, describe, expect, it } from "vitest";
import { runPeer, torchPython } from "../support/python-peer.js";
import { hexOf, randomTensor } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

type Expected = Record<string, { dtype: string; shape: number[]; hex: string }>;
const CLI = fileURLToPath(new URL("../../packages/cli/src/cli.ts", import.meta.url));
const dcp = (args: string[]) =>
  promisify(execFile)(process.execPath, ["--import", "tsx", "--conditions=@dcpjs/source", CLI, ...args]);

beforeAll(async () => {
  await torchPython(); // installs the peer once (from the machine's local wheels) when missing
}, 600_000);

function expectSame(sd: StateDict, expected: Expected) {
  for (const [k, e] of Object.entries(expected)) {
    const t = sd[k] as Tensor;
    expect({ k, dtype: t.dtype, shape: [...t.shape], hex: hexOf(t) }).toEqual({ k, ...e });
  }
}

describe("safetensors written by the real safetensors 0.8 and torch 2.13, loaded by dcpjs", () => {
  it("save_file: every dtype, 0-d, empty, NaN/±Inf and int64 extremes load bit-exact; inspect says safetensors", async () => {
    const dir = await tempDir();
    await runPeer("safetensors_peer.py", ["write-files", dir]);
    const expected = JSON.parse(await readFile(join(dir, "expected.json"), "utf8")) as Expected;
    const sd = await loadStateDictFromKeys({ checkpointId: dir });
    expect(Object.keys(sd).sort()).toEqual(Object.keys(expected).sort());
    expectSame(sd, expected);
    const reader = await createStorageReader(dir);
    expect(describeCheckpoint(await reader.readMetadata(), dir).format).toBe("safetensors");
  });

  it("loads resharded into 2 ranks (columns of a [3, 5] tensor)", async () => {
    const dir = await tempDir();
    await runPeer("safetensors_peer.py", ["write-files", dir]);
    const whole = (await loadStateDictFromKeys({ checkpointId: dir }))["t.float32"] as Tensor;
    await Promise.all(
      createLocalProcessGroups(2).map(async (pg) => {
        const mine = shardTensor(emptyTensor("float32", [3, 5]), { dim: 1, rank: pg.rank, worldSize: 2 });
        await load({ "t.float32": mine }, { checkpointId: dir, processGroup: pg });
        const want = shardTensor(whole, { dim: 1, rank: pg.rank, worldSize: 2 });
        expect(hexOf(mine.shards[0]!.tensor)).toBe(hexOf(want.shards[0]!.tensor));
      }),
    );
  });

  it.each([
    ["HuggingFaceStorageWriter", "plain"],
    ["HuggingFaceStorageWriter(save_distributed=True)", "distributed"],
  ])("%s output loads bit-exact", async (_name, mode) => {
    const root = await tempDir();
    const dir = join(root, mode);
    const r = await runPeer<{ files: string[] }>("safetensors_peer.py", ["hf-writer", dir, mode]);
    expect(r.files.some((f) => f.endsWith(".safetensors"))).toBe(true);
    const expected = JSON.parse(await readFile(join(root, `expected-${mode}.json`), "utf8")) as Expected;
    expectSame(await loadStateDictFromKeys({ checkpointId: dir }), expected);
  });
});

describe("dcp export --format safetensors, read back by the real safetensors and torch", () => {
  async function savedCheckpoint(ranks: number, floatOnly = false) {
    const dir = await tempDir();
    const full: Record<string, Tensor> = {
      "layers.0.weight": randomTensor("float32", [12, 7], 1),
      "layers.0.bias": randomTensor("bfloat16", [12], 2),
      "embed.weight": randomTensor("float16", [9, 4], 3),
    };
    // torch 2.13's consolidate_safetensors_files handles float dtypes only (torch.finfo) and
    // writes 0-d tensors as zeros: the sharded test leaves those out.
    if (!floatOnly) {
      full.scalar = randomTensor("float64", [], 4);
      full.ids = randomTensor("int64", [5], 5);
      full.mask = randomTensor("bool", [6], 6);
      full.empty = randomTensor("int8", [0, 3], 7);
    }
    await Promise.all(
      createLocalProcessGroups(ranks).map((pg) => {
        const sd: StateDict = { step: 42, config: { lr: 0.5, name: "x" } };
        for (const [k, t] of Object.entries(full))
          sd[k] =
            t.shape.length > 0 && t.shape[0]! >= ranks
              ? shardTensor(t, { rank: pg.rank, worldSize: ranks })
              : t;
        // flat keys: an fqn with dots is its own key, as in a PyTorch state_dict
        return save(sd, { checkpointId: dir, processGroup: pg });
      }),
    );
    const expected: Expected = Object.fromEntries(
      Object.entries(full).map(([k, t]) => [k, { dtype: t.dtype, shape: [...t.shape], hex: hexOf(t) }]),
    );
    const expectedFile = join(dir, "..", `expected-${Date.now()}.json`);
    await writeFile(expectedFile, JSON.stringify(expected));
    return { dir, expected, expectedFile };
  }

  it("consolidated files + index: safetensors.load_file and HuggingFaceStorageReader see every tensor bit-exact", async () => {
    const { dir, expectedFile } = await savedCheckpoint(3);
    const out = await tempDir();
    const summary = await exportSafetensors(dir, out, { maxShardSize: 200 }); // several files
    expect(summary.values).toBe(3);
    const files = (await readdir(out)).sort();
    expect(files).toContain(SAFETENSORS_INDEX_FILE);
    const shards = files.filter((f) => f.endsWith(".safetensors"));
    expect(shards.length).toBeGreaterThan(1);
    expect(shards[0]).toMatch(/^model-00001-of-0000\d\.safetensors$/);
    const index = JSON.parse(await readFile(join(out, SAFETENSORS_INDEX_FILE), "utf8"));
    expect(Object.keys(index.weight_map).sort()).toEqual(
      ["embed.weight", "empty", "ids", "layers.0.bias", "layers.0.weight", "mask", "scalar"].sort(),
    );
    for (const f of shards) {
      const bytes = await readFile(join(out, f));
      expect(Number(bytes.readBigUInt64LE(0)) % 8).toBe(0); // header padded to 8
    }
    const first = await readFile(join(out, shards[0]!));
    const header = parseSafetensorsHeader(
      first.subarray(8, 8 + Number(first.readBigUInt64LE(0))),
      first.length,
      shards[0]!,
    );
    expect(JSON.parse(header.metadata.get("dcpjs_values")!)).toEqual({
      step: 42,
      "config.lr": 0.5,
      "config.name": "x",
    });
    const r = await runPeer<{ ok: boolean; mismatches: string[] }>("safetensors_peer.py", [
      "check-export",
      out,
      expectedFile,
    ]);
    expect(r.mismatches).toEqual([]);
  });

  it("--sharded writes the save_distributed layout that torch's HuggingFaceStorageReader reads and consolidate_safetensors_files accepts", async () => {
    const { dir, expectedFile } = await savedCheckpoint(2, true);
    const out = await tempDir();
    await exportSafetensors(dir, out, { sharded: true });
    const files = (await readdir(out)).sort();
    expect(files.every((f) => /^shard-\d{5}-model-00001-of-00001\.safetensors$/.test(f))).toBe(true);
    expect(files.length).toBeGreaterThanOrEqual(2);
    const r = await runPeer<{ mismatches: string[] }>("safetensors_peer.py", [
      "check-export",
      out,
      expectedFile,
      "sharded",
    ]);
    expect(r.mismatches).toEqual([]);
    // and dcpjs reads its own sharded export back, reassembling every tensor
    const { expected } = { expected: JSON.parse(await readFile(expectedFile, "utf8")) as Expected };
    expectSame(await loadStateDictFromKeys({ checkpointId: out }), expected);
  });

  it("--checksums writes a CRC-32C sidecar that every later load and dcp verify check", async () => {
    const { dir } = await savedCheckpoint(1);
    const out = await tempDir();
    await dcp(["export", dir, out, "--checksums", "--max-shard-size", "1GB"]);
    expect((await verifyCheckpoint(out)).damaged).toEqual([]);
    const file = join(out, "model-00001-of-00001.safetensors");
    const bytes = await readFile(file);
    const header = parseSafetensorsHeader(
      bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))),
      bytes.length,
      "f",
    );
    const weight = header.entries.find((e) => e.name === "layers.0.weight")!;
    bytes[weight.offset + 5]! ^= 0x40;
    await writeFile(file, bytes);
    const report = await verifyCheckpoint(out);
    expect(report.damaged).toEqual([
      expect.objectContaining({ fqn: "layers.0.weight", code: "CHECKSUM_MISMATCH" }),
    ]);
    const failed = await dcp(["verify", out]).catch((e: { code: number; stderr: string }) => e);
    expect((failed as { code: number }).code).toBe(1);
    expect((failed as { stderr: string }).stderr).toMatch(/damaged: layers\.0\.weight: CHECKSUM_MISMATCH/);
  });

  it("dcp convert imports a safetensors folder as a dcpjs checkpoint", async () => {
    const src = await tempDir();
    await runPeer("safetensors_peer.py", ["write-files", src]);
    const expected = JSON.parse(await readFile(join(src, "expected.json"), "utf8")) as Expected;
    const dst = join(await tempDir(), "converted");
    const { stdout } = await dcp(["convert", src, dst]);
    expect(stdout).toMatch(/converted \d+ entries/);
    expect(await readdir(dst)).toContain(".metadata");
    expectSame(await loadStateDictFromKeys({ checkpointId: dst }), expected);
  });
});

describe("malformed safetensors headers get a coded MetadataError", () => {
  const header = (json: string, data = 0) => {
    const text = Buffer.from(json);
    return { json: new Uint8Array(text), size: 8 + text.length + data };
  };
  const refused = (json: string, data = 0) => {
    const h = header(json, data);
    try {
      parseSafetensorsHeader(h.json, h.size, "f.safetensors");
    } catch (e) {
      expect(e).toBeInstanceOf(CheckpointError);
      return e as CheckpointError;
    }
    throw new Error(`accepted ${json}`);
  };
  it.each([
    ["not beginning with {", ' {"a":1}', /begin with "\{"/],
    ["not JSON", "{oops", /expected the header to be JSON/],
    [
      "a duplicate name",
      '{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}',
      /duplicate tensor name "a"/,
    ],
    ["__proto__", '{"__proto__":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', /other than "__proto__"/],
    [
      "a shape that disagrees with its offsets",
      '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}',
      /expected 8 bytes, data_offsets span 4/,
    ],
    [
      "overlapping tensors",
      '{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}',
      /overlaps/,
    ],
    ["a hole", '{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', /a hole/],
    [
      "offsets out of bounds",
      '{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}',
      /ends at byte 4 of a 2-byte buffer/,
    ],
    [
      "an unknown dtype",
      '{"a":{"dtype":"Q9","shape":[1],"data_offsets":[0,1]}}',
      /expected a safetensors dtype/,
    ],
  ])("refuses %s", (_name, json, message) => {
    const e = refused(json, json.includes('"b"') ? 3 : 2);
    expect(e).toBeInstanceOf(MetadataError);
    expect(e.code).toBe("MALFORMED_METADATA");
    expect(e.message).toMatch(message);
  });

  it("refuses invalid UTF-8, and F4 whose last dimension splits no pair of values (UNSUPPORTED_DTYPE, naming the tensor)", () => {
    expect(() => parseSafetensorsHeader(new Uint8Array([0x7b, 0xff, 0x7d]), 11, "f")).toThrow(/UTF-8/);
    const e = refused('{"w":{"dtype":"F4","shape":[4,3],"data_offsets":[0,6]}}', 6);
    expect(e.code).toBe("UNSUPPORTED_DTYPE");
    expect(e.message).toMatch(/"w" in f\.safetensors \(F4 \[4, 3\]\).*multiple of 2/);
  });

  it("reads FP8 and packed sub-byte dtypes, the shape in dcpjs elements (F4 [4, 6] is float4_e2m1fn_x2 [4, 3])", () => {
    const parse = (json: string, bytes: number) => {
      const b = new TextEncoder().encode(json);
      return parseSafetensorsHeader(b, 8 + b.byteLength + bytes, "f.safetensors").entries[0]!;
    };
    expect(parse('{"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}', 2)).toMatchObject({
      dtype: "float8_e4m3fn",
      shape: [2],
    });
    expect(parse('{"w":{"dtype":"F4","shape":[4,6],"data_offsets":[0,12]}}', 12)).toMatchObject({
      dtype: "float4_e2m1fn_x2",
      shape: [4, 3],
    });
    expect(parse('{"w":{"dtype":"F6_E3M2","shape":[8],"data_offsets":[0,6]}}', 6)).toMatchObject({
      dtype: "float6_e3m2fn_x4",
      shape: [2],
    });
  });

  it("refuses a header length beyond the file before reading it", async () => {
    const dir = await tempDir();
    const bytes = Buffer.alloc(16);
    bytes.writeBigUInt64LE(2n ** 40n, 0);
    await writeFile(join(dir, "model.safetensors"), bytes);
    await expect(loadStateDictFromKeys({ checkpointId: dir })).rejects.toThrow(
      /the header claims 1099511627776 bytes/,
    );
  });
});
