import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  CheckpointError,
  createLocalProcessGroups,
  createStorageReader,
  emptyTensor,
  load,
  loadStateDictFromKeys,
  MetadataError,
  type StateDict,
  shardTensor,
  type Tensor,
} from "@dcpjs/core";
import { METADATA_FILE } from "@dcpjs/core/extend";
import { describeCheckpoint } from "@dcpjs/core/ops";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { failureOf } from "../support/failure.js";
import { runPeer, torchPython } from "../support/python-peer.js";
import { hexOf } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";
import { expectTorchEntries, type TorchExpected } from "../support/torch-expected.js";

type Expected = TorchExpected;

beforeAll(async () => {
  await torchPython();
}, 600_000);

/** A checkpoint saved by torch 2.13's dcp.save, and what it holds. */
async function torchCheckpoint(
  mode: "single" | "per-item" | "threads" | "zstd" | "no-collectives" | "distributed",
) {
  const root = await tempDir();
  const dir = join(root, "ckpt");
  await runPeer("torch_peer.py", ["save", dir, mode]);
  const expected = JSON.parse(await readFile(join(root, `expected-${mode}.json`), "utf8")) as Expected;
  return { dir, expected };
}

describe("PyTorch DCP checkpoints (torch 2.13 dcp.save) load in dcpjs, verified", () => {
  it.each(["single", "per-item", "threads", "zstd", "no-collectives"] as const)(
    "%s: every tensor (all dtypes, 0-d, empty, NaN/±Inf, int64 extremes, transposed and sliced views, Adam state) and value, bit-exact",
    async (mode) => {
      const { dir, expected } = await torchCheckpoint(mode);
      const sd = await loadStateDictFromKeys({ checkpointId: dir });
      expectTorchEntries(sd, expected);
      // nesting rebuilt from planner_data: param_groups is a list again
      expect(Array.isArray((sd.optim as { param_groups: unknown }).param_groups)).toBe(true);
      const reader = await createStorageReader(dir);
      expect(describeCheckpoint(await reader.readMetadata(), dir).format).toBe("torch");
    },
  );

  it("a 2-process gloo save of DTensors (Shard(0), Shard(1), uneven bf16, Replicate) loads into 3 dcpjs ranks with another sharding, bit-exact", async () => {
    const { dir, expected } = await torchCheckpoint("distributed");
    const hex = (k: string) => (expected[k] as { hex: string }).hex;
    const whole = await loadStateDictFromKeys({ checkpointId: dir });
    for (const k of ["rows", "cols", "uneven", "rep", "bias"]) expect(hexOf(whole[k] as Tensor)).toBe(hex(k));
    expect(whole.step).toBe(77);
    await Promise.all(
      createLocalProcessGroups(3).map(async (pg) => {
        const place = (dtype: "float32" | "int64" | "bfloat16", shape: number[], dim: number) =>
          shardTensor(emptyTensor(dtype, shape), { dim, rank: pg.rank, worldSize: 3 });
        const sd = {
          rows: place("float32", [8, 6], 1),
          cols: place("int64", [4, 10], 0),
          uneven: place("bfloat16", [7, 5], 1),
        };
        await load(sd, { checkpointId: dir, processGroup: pg });
        for (const [k, t] of Object.entries(sd)) {
          const want = shardTensor(whole[k] as Tensor, {
            dim: k === "cols" ? 0 : 1,
            rank: pg.rank,
            worldSize: 3,
          });
          expect(t.shards.map((x) => hexOf(x.tensor))).toEqual(want.shards.map((x) => hexOf(x.tensor)));
        }
      }),
    );
  });

  it("loads resharded into 3 ranks (columns of a [5, 7] tensor torch stored transposed)", async () => {
    const { dir, expected } = await torchCheckpoint("single");
    const whole = (await loadStateDictFromKeys({ checkpointId: dir, keys: ["t.transposed"] })) as {
      t: { transposed: Tensor };
    };
    expect(hexOf(whole.t.transposed)).toBe((expected["t.transposed"] as { hex: string }).hex);
    await Promise.all(
      createLocalProcessGroups(3).map(async (pg) => {
        const mine = shardTensor(emptyTensor("float32", [7, 5]), { dim: 1, rank: pg.rank, worldSize: 3 });
        await load({ t: { transposed: mine } }, { checkpointId: dir, processGroup: pg });
        const want = shardTensor(whole.t.transposed, { dim: 1, rank: pg.rank, worldSize: 3 });
        expect(hexOf(mine.shards[0]!.tensor)).toBe(hexOf(want.shards[0]!.tensor));
      }),
    );
  });

  it("a flipped data byte, which torch itself loads silently, is caught: CHECKSUM_MISMATCH naming the fqn", async () => {
    const { dir, expected } = await torchCheckpoint("single");
    const file = join(dir, "__0_0.distcp");
    const bytes = await readFile(file);
    const raw = Buffer.from((expected["t.f32"] as { hex: string }).hex, "hex");
    const at = bytes.indexOf(raw);
    expect(at).toBeGreaterThan(0);
    bytes[at + 3]! ^= 0x01;
    await writeFile(file, bytes);
    const f = await failureOf(load({ t: { f32: emptyTensor("float32", [4, 3]) } }, { checkpointId: dir }));
    expect(f.code).toBe("CHECKSUM_MISMATCH");
    expect(f.message).toMatch(/^CRC-32 mismatch for "t\.f32" in __0_0\.distcp .*\(zip member .*data\/\d+\)/);
  });
});

describe("PyTorch 1.13 checkpoints (Debian's python3-torch)", () => {
  it("save_state_dict of every dtype, a transposed view, 0-d, empty, values and a nested dict with a tensor load bit-exact", async () => {
    const root = await tempDir();
    const dir = join(root, "ckpt");
    const r = await runPeer<{ version: string }>("torch113_peer.py", ["save", dir]);
    expect(r.version).toMatch(/^1\.13/);
    const expected = JSON.parse(await readFile(join(root, "expected-113.json"), "utf8")) as Record<
      string,
      { hex?: string; dtype?: string; shape?: number[]; value?: unknown; nested?: { lr: number; w: string } }
    >;
    const sd = await loadStateDictFromKeys({ checkpointId: dir });
    for (const [k, e] of Object.entries(expected)) {
      if (e.hex !== undefined) {
        const t = sd[k] as Tensor;
        expect({ k, dtype: t.dtype, shape: [...t.shape], hex: hexOf(t) }).toEqual({
          k,
          dtype: e.dtype,
          shape: e.shape,
          hex: e.hex,
        });
      } else if (e.nested) {
        // 1.13 pickles a nested dict as one value; its tensor comes back as {dtype, shape, data}
        const v = sd[k] as { lr: number; w: Tensor };
        expect(v.lr).toBe(e.nested.lr);
        expect(Buffer.from(v.w.data as Uint8Array).toString("hex")).toBe(e.nested.w);
      } else {
        expect(sd[k]).toEqual(e.value);
      }
    }
  }, 1_200_000);
});

describe("hostile PyTorch .metadata gets a coded MetadataError, never a crash", () => {
  async function withMetadata(bytes: Uint8Array) {
    const dir = await tempDir();
    await writeFile(join(dir, METADATA_FILE), bytes);
    return failureOf(loadStateDictFromKeys({ checkpointId: dir }));
  }

  it("refuses a global outside the allowlist, naming it (os.system)", async () => {
    const python = await torchPython();
    const { execFile } = await import("node:child_process");
    const bytes = await new Promise<Buffer>((resolve, reject) =>
      execFile(
        python,
        [
          "-c",
          "import os,pickle,sys\nclass E:\n  def __reduce__(self): return (os.system, ('echo pwned',))\nsys.stdout.buffer.write(pickle.dumps(E(), protocol=4))",
        ],
        { encoding: "buffer" },
        (err, stdout) => (err ? reject(err) : resolve(stdout)),
      ),
    );
    const f = await withMetadata(bytes);
    expect(f).toBeInstanceOf(MetadataError);
    expect(f.message).toMatch(/refusing the global posix\.system \(not in the allowlist\)/);
  });

  it("refuses a 2^40-byte string, a memo bomb and an unknown opcode within the input's bounds", async () => {
    const longString = new Uint8Array([0x80, 0x04, 0x8d, 0, 0, 0, 0, 0, 0x01, 0, 0, 0x2e]); // BINUNICODE8 of 2^40 bytes
    expect((await withMetadata(longString)).message).toMatch(/a length of 1099511627776 exceeds the input/);
    const memo = new Uint8Array(2 + 1 + 2 * 1_000_002).fill(0x94);
    memo.set([0x80, 0x04, 0x4e]);
    for (let i = 3; i < memo.length; i += 2) memo.set([0x32, 0x94], i); // DUP, MEMOIZE …
    expect((await withMetadata(memo)).message).toMatch(/grew beyond 1000000 entries/);
    expect((await withMetadata(new Uint8Array([0x80, 0x04, 0x69]))).message).toMatch(
      /refusing the opcode 0x69/,
    );
  });

  it("refuses 100,000 levels of nesting as not a DCP Metadata, without recursion", async () => {
    const n = 100_000;
    const bytes = new Uint8Array(2 + n + n + 1);
    bytes.set([0x80, 0x04]);
    bytes.fill(0x5d, 2, 2 + n); // EMPTY_LIST × n
    bytes.fill(0x61, 2 + n, 2 + 2 * n - 1); // APPEND × (n - 1): each list into the one below
    bytes[2 * n + 1] = 0x2e; // STOP
    const f = await withMetadata(bytes);
    expect(f).toBeInstanceOf(MetadataError);
    expect(f.message).toMatch(/expected the top level to be a Metadata/);
  });

  it("fuzzed real .metadata files (random byte edits) give only typed errors, fast", async () => {
    const { dir } = await torchCheckpoint("single");
    const original = await readFile(join(dir, METADATA_FILE));
    const { decodeTorchMetadata } = await import("../../packages/core/src/formats/torch/torch-metadata.js");
    const started = performance.now();
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(original.length - 1), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 6,
        }),
        (edits) => {
          const mutated = new Uint8Array(original);
          for (const [at, v] of edits) mutated[at] = v;
          try {
            decodeTorchMetadata(mutated);
          } catch (error) {
            expect(error).toBeInstanceOf(CheckpointError);
          }
        },
      ),
      { numRuns: 1500 },
    );
    expect(performance.now() - started).toBeLessThan(30_000);
  });
});

describe('dcpjs writes PyTorch DCP\'s format (format: "torch"), which torch 2.13 loads', () => {
  it("4 ranks save sharded and replicated tensors and values; torch's dcp.load (1 process, and 2 gloo ranks into DTensors) and _load_state_dict_from_keys read them bit-exact", async () => {
    const root = await tempDir();
    const dir = join(root, "ckpt");
    const { randomTensor } = await import("../support/tensors.js");
    const full: Record<string, Tensor> = {
      "layer.weight": randomTensor("float32", [10, 6], 1),
      "layer.bias": randomTensor("bfloat16", [10], 2),
      "embed.weight": randomTensor("float16", [7, 3], 3),
      ids: randomTensor("int64", [5], 4),
      mask: randomTensor("bool", [4], 5),
      scalar: randomTensor("float64", [], 6),
      empty: randomTensor("int8", [0, 3], 7),
      i16: randomTensor("int16", [3], 8),
      u8: randomTensor("uint8", [3], 9),
      i32: randomTensor("int32", [2, 2], 10),
    };
    const values = { step: 1234, big: 2n ** 40n, name: "dcpjs ✓", lr: 0.125, nothing: null };
    const { FileSystemWriter, save } = await import("@dcpjs/core");
    await Promise.all(
      createLocalProcessGroups(4).map((pg) => {
        const sd: StateDict = { ...values };
        for (const [k, t] of Object.entries(full))
          sd[k] =
            t.shape.length > 0 && t.shape[0]! >= 4 ? shardTensor(t, { rank: pg.rank, worldSize: 4 }) : t;
        return save(sd, {
          storageWriter: new FileSystemWriter({ path: dir, format: "torch" }),
          processGroup: pg,
        });
      }),
    );
    const expected: Expected = {
      ...Object.fromEntries(
        Object.entries(full).map(([k, t]) => [k, { dtype: t.dtype, shape: [...t.shape], hex: hexOf(t) }]),
      ),
      ...Object.fromEntries(
        Object.entries(values).map(([k, v]) => [k, { value: typeof v === "bigint" ? Number(v) : v }]),
      ),
    };
    const expectedFile = join(root, "expected.json");
    await writeFile(expectedFile, JSON.stringify(expected));
    const r = await runPeer<{ ok: boolean; mismatches: string[] }>("torch_peer.py", [
      "check",
      dir,
      expectedFile,
    ]);
    expect(r.mismatches).toEqual([]);
    // torch with 2 gloo ranks, into DTensors sharded by columns (the saved shards are rows)
    const d2 = await runPeer<{ mismatches: string[]; loaded: string[] }>("torch_peer.py", [
      "check-dist",
      dir,
      expectedFile,
    ]);
    expect(d2.loaded).toEqual(["embed.weight", "empty", "i32", "layer.weight"]);
    expect(d2.mismatches).toEqual([]);
    // and dcpjs reads its own torch-format checkpoint back, resharded into 3 ranks
    await Promise.all(
      createLocalProcessGroups(3).map(async (pg) => {
        const mine = shardTensor(emptyTensor("float32", [10, 6]), { dim: 1, rank: pg.rank, worldSize: 3 });
        await load({ "layer.weight": mine }, { checkpointId: dir, processGroup: pg });
        const want = shardTensor(full["layer.weight"]!, { dim: 1, rank: pg.rank, worldSize: 3 });
        expect(hexOf(mine.shards[0]!.tensor)).toBe(hexOf(want.shards[0]!.tensor));
      }),
    );
  });
});

describe("dcp convert between PyTorch's format and dcpjs's", () => {
  it("torch 2.13 checkpoint → dcpjs → torch format: torch loads every entry of the round trip bit-exact", async () => {
    const { execFile } = await import("node:child_process");
    const { promisify } = await import("node:util");
    const { fileURLToPath } = await import("node:url");
    const cli = fileURLToPath(new URL("../../packages/cli/src/cli.ts", import.meta.url));
    const dcp = (args: string[]) =>
      promisify(execFile)(process.execPath, ["--import", "tsx", "--conditions=@dcpjs/source", cli, ...args]);
    const { dir } = await torchCheckpoint("single");
    const native = join(dir, "..", "native");
    const back = join(dir, "..", "back");
    expect((await dcp(["convert", dir, native])).stdout).toMatch(/into the dcpjs checkpoint/);
    expect((await dcp(["inspect", native])).stdout).toMatch(/format dcpjs/);
    expect((await dcp(["convert", native, back, "--to", "torch"])).stdout).toMatch(
      /into the torch checkpoint/,
    );
    const r = await runPeer<{ mismatches: string[] }>("torch_peer.py", [
      "check",
      back,
      join(dir, "..", "expected-single.json"),
    ]);
    expect(r.mismatches).toEqual([]);
  });
});
