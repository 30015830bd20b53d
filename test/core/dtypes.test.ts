import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  CheckpointError,
  convertCheckpoint,
  DTYPE_BYTES,
  DTYPES,
  type DType,
  emptyTensor,
  exportSafetensors,
  FileSystemWriter,
  load,
  loadStateDictFromKeys,
  type ShardedTensor,
  save,
  shardTensor,
  sliceTensor,
  type Tensor,
} from "@dcpjs/core";
import { flattenStateDict } from "@dcpjs/core/extend";
import { SAFETENSORS_DTYPES } from "@dcpjs/core/testing";
import { beforeAll, describe, expect, it } from "vitest";
import { decodeTorchItem } from "../../packages/core/src/formats/torch/torch-item.js";
import { torchTensorArchive } from "../../packages/core/src/formats/torch/torch-write.js";
import { failureOf } from "../support/failure.js";
import { runPeer, torchPython } from "../support/python-peer.js";
import { allRanks } from "../support/ranks.js";
import { hexOf, randomTensor, sameTensor } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

type Described = Record<string, { dtype: string; shape: number[]; hex: string }>;
type Check = { ok: boolean; mismatches: string[]; checked: number; load_file?: number };

beforeAll(async () => {
  await torchPython();
}, 600_000);

/** The typed array, bytes per element and array elements per tensor element of every dtype. */
const TABLE: Record<DType, [new (n: number) => ArrayBufferView, number, number]> = {
  float64: [Float64Array, 8, 1],
  float32: [Float32Array, 4, 1],
  float16: [Uint16Array, 2, 1],
  bfloat16: [Uint16Array, 2, 1],
  int64: [BigInt64Array, 8, 1],
  int32: [Int32Array, 4, 1],
  int16: [Int16Array, 2, 1],
  int8: [Int8Array, 1, 1],
  uint8: [Uint8Array, 1, 1],
  bool: [Uint8Array, 1, 1],
  uint16: [Uint16Array, 2, 1],
  uint32: [Uint32Array, 4, 1],
  uint64: [BigUint64Array, 8, 1],
  complex32: [Uint16Array, 4, 2],
  complex64: [Float32Array, 8, 2],
  complex128: [Float64Array, 16, 2],
  float8_e4m3fn: [Uint8Array, 1, 1],
  float8_e4m3fnuz: [Uint8Array, 1, 1],
  float8_e5m2: [Uint8Array, 1, 1],
  float8_e5m2fnuz: [Uint8Array, 1, 1],
  float8_e8m0fnu: [Uint8Array, 1, 1],
  float4_e2m1fn_x2: [Uint8Array, 1, 1],
  float6_e2m3fn_x4: [Uint8Array, 3, 3],
  float6_e3m2fn_x4: [Uint8Array, 3, 3],
};

describe("the dtype table", () => {
  it.each(DTYPES)("%s: element size, typed array and its length", (dtype) => {
    const [ctor, bytes, per] = TABLE[dtype];
    expect(DTYPE_BYTES[dtype]).toBe(bytes);
    const t = emptyTensor(dtype, [2, 3]);
    expect(t.data).toBeInstanceOf(ctor);
    expect(t.data.byteLength).toBe(6 * bytes);
    expect((t.data as unknown as { length: number }).length).toBe(6 * per);
  });

  it("safetensors names every dtype but complex32 and complex128 (the 22 of safetensors 0.8)", () => {
    expect(Object.keys(SAFETENSORS_DTYPES).sort()).toEqual(
      [
        ...["BF16", "BOOL", "C64", "F16", "F32", "F4", "F64", "F6_E2M3", "F6_E3M2", "F8_E4M3", "F8_E4M3FNUZ"],
        ...["F8_E5M2", "F8_E5M2FNUZ", "F8_E8M0", "I16", "I32", "I64", "I8", "U16", "U32", "U64", "U8"],
      ].sort(),
    );
    expect(DTYPES.filter((d) => !Object.values(SAFETENSORS_DTYPES).includes(d))).toEqual([
      "complex32",
      "complex128",
    ]);
  });
});

describe("torch items of every dtype torch has", () => {
  it.each(DTYPES.filter((d) => !d.startsWith("float6_")))(
    "%s: the archive dcpjs writes decodes to the same dtype, shape and bytes",
    (dtype) => {
      const t = randomTensor(dtype, [3, 2], 5);
      const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      const { prefix, suffix } = torchTensorArchive(dtype, [3, 2], bytes);
      const item = decodeTorchItem(new Uint8Array(Buffer.concat([prefix, bytes, suffix])), "w", "f");
      if (item.kind !== "tensor") throw new Error("expected a tensor item");
      expect({ dtype: item.dtype, shape: [...item.shape] }).toEqual({ dtype, shape: [3, 2] });
      expect(Buffer.from(item.bytes).equals(Buffer.from(bytes))).toBe(true);
    },
  );
});

describe("golden table: torch 2.13 dcp.save → dcpjs load → dcpjs save (format torch) → torch 2.13 dcp.load", () => {
  it("every dtype torch's DCP saves (22), _rebuild_tensor_v3 views, 0-d uint64 and empty complex128, bit-exact both ways", async () => {
    const root = await tempDir();
    const src = join(root, "ckpt");
    await runPeer("dtypes_peer.py", ["torch-save", src]);
    const expected = JSON.parse(await readFile(join(root, "expected-dtypes.json"), "utf8")) as Described;
    expect(new Set(Object.values(expected).map((e) => e.dtype)).size).toBe(22);

    const sd = await loadStateDictFromKeys({ checkpointId: src });
    const flat = flattenStateDict(sd).flat;
    for (const [fqn, e] of Object.entries(expected)) {
      const t = flat.get(fqn) as Tensor;
      expect({ fqn, dtype: t.dtype, shape: [...t.shape], hex: hexOf(t) }).toEqual({ fqn, ...e });
      expect(t.data).toBeInstanceOf(TABLE[t.dtype][0]);
    }

    const out = join(root, "out");
    await save(sd, { storageWriter: new FileSystemWriter({ path: out, format: "torch" }) });
    const r = await runPeer<Check>("dtypes_peer.py", [
      "torch-check",
      out,
      join(root, "expected-dtypes.json"),
    ]);
    expect(r.mismatches).toEqual([]);
    expect(r.checked).toBe(Object.keys(expected).length);

    // And through dcpjs's own format: its .metadata keeps every dtype's name.
    const own = join(root, "own");
    await save(sd, { checkpointId: own });
    const again = flattenStateDict(await loadStateDictFromKeys({ checkpointId: own })).flat;
    for (const [fqn, e] of Object.entries(expected)) {
      const t = again.get(fqn) as Tensor;
      expect({ fqn, dtype: t.dtype, shape: [...t.shape], hex: hexOf(t) }).toEqual({ fqn, ...e });
    }
  }, 600_000);

  it("refuses to write FP6 (which torch lacks) in the torch format, naming the tensor", async () => {
    const dir = await tempDir();
    const f = await failureOf(
      save(
        { fp6: emptyTensor("float6_e2m3fn_x4", [2]) },
        { storageWriter: new FileSystemWriter({ path: dir, format: "torch" }) },
      ),
    );
    expect(f.code).toBe("UNSUPPORTED_DTYPE");
    expect(f.message).toMatch(/"fp6".*float6_e2m3fn_x4/);
  });
});

/** The dcpjs shape of a safetensors tensor: packed types count elements, not values, in their last dimension. */
const PACKED: Record<string, number> = { F4: 2, F6_E2M3: 4, F6_E3M2: 4 };
const dcpShape = (dtype: string, shape: number[]) =>
  PACKED[dtype] ? [...shape.slice(0, -1), shape.at(-1)! / PACKED[dtype]!] : shape;

describe("golden table: safetensors 0.8 save_file → dcpjs load → dcpjs save → export to safetensors → safetensors 0.8", () => {
  it.each([
    ["torch", 18, 18],
    ["packed", 2, 0],
    ["fp6", 3, 0],
  ])(
    "%s: every tensor bit-exact, dtype and shape as the file says (%i tensors; %i through load_file too)",
    async (group, count, viaLoadFile) => {
      const root = await tempDir();
      await runPeer("dtypes_peer.py", ["st-save", root]);
      const src = join(root, group);
      const expectedFile = join(src, "expected.json");
      const expected = JSON.parse(await readFile(expectedFile, "utf8")) as Described;
      expect(Object.keys(expected)).toHaveLength(count);

      const sd = await loadStateDictFromKeys({ checkpointId: src });
      const flat = flattenStateDict(sd).flat;
      for (const [name, e] of Object.entries(expected)) {
        const t = flat.get(name) as Tensor;
        expect({ name, dtype: t.dtype, shape: [...t.shape], hex: hexOf(t) }).toEqual({
          name,
          dtype: SAFETENSORS_DTYPES[e.dtype],
          shape: dcpShape(e.dtype, e.shape),
          hex: e.hex,
        });
      }
      const own = join(root, `${group}-dcpjs`);
      await save(sd, { checkpointId: own });
      const out = join(root, `${group}-export`);
      // What `dcp convert --to safetensors` runs, in small batches (a 4 KiB window) so that the
      // streaming path carries every dtype.
      await convertCheckpoint(own, out, { to: "safetensors", windowBytes: 4096 });
      const r = await runPeer<Check>("dtypes_peer.py", ["st-check", out, expectedFile]);
      expect(r.mismatches).toEqual([]);
      expect([r.checked, r.load_file]).toEqual([count, viaLoadFile]);
    },
    600_000,
  );

  it("refuses to export complex32/complex128 (safetensors has neither) before writing, naming the tensor", async () => {
    const root = await tempDir();
    await save({ z: randomTensor("complex128", [2, 2], 3) }, { checkpointId: join(root, "c") });
    const f = await failureOf(exportSafetensors(join(root, "c"), join(root, "out")));
    expect(f.code).toBe("UNSUPPORTED_DTYPE");
    expect(f.message).toMatch(/"z".*complex128/);
  });
});

describe("PyTorch 1.13 checkpoints with complex tensors", () => {
  it("a save_state_dict holding complex64 and complex128 among its tensors loads whole, bit-exact", async () => {
    const root = await tempDir();
    const dir = join(root, "ckpt");
    await runPeer("torch113_peer.py", ["save", dir]);
    const expected = JSON.parse(await readFile(join(root, "expected-113.json"), "utf8")) as Record<
      string,
      { dtype?: string; shape?: number[]; hex?: string }
    >;
    const sd = await loadStateDictFromKeys({ checkpointId: dir });
    expect(Object.keys(sd).sort()).toEqual(Object.keys(expected).sort());
    for (const k of ["c64", "c128"]) {
      const t = sd[k] as Tensor;
      expect({ dtype: t.dtype, shape: [...t.shape], hex: hexOf(t) }).toEqual(expected[k]);
    }
    expect((sd.c64 as Tensor).data).toBeInstanceOf(Float32Array);
  }, 1_200_000);
});

describe("a checkpoint with a dtype dcpjs cannot hold fails only the loads that ask for it (as DCP)", () => {
  async function unknownCheckpoint() {
    const root = await tempDir();
    const dir = join(root, "ckpt");
    const r = await runPeer<{ torch_loads_a: boolean }>("dtypes_peer.py", ["torch-unknown", dir]);
    expect(r.torch_loads_a).toBe(true);
    const expected = JSON.parse(await readFile(join(root, "expected-unknown.json"), "utf8")) as Described;
    return { dir, expected };
  }

  it("loadStateDictFromKeys({ keys }) and a load whose target omits it succeed; the others name the fqn and dtype", async () => {
    const { dir, expected } = await unknownCheckpoint();
    const some = await loadStateDictFromKeys({ checkpointId: dir, keys: ["a", "step"] });
    expect(hexOf(some.a as Tensor)).toBe(expected.a!.hex);
    expect(some.step).toBe(7);

    const target = { a: emptyTensor("float32", [3, 4]) };
    await load(target, { checkpointId: dir });
    expect(hexOf(target.a)).toBe(expected.a!.hex);

    const all = await failureOf(loadStateDictFromKeys({ checkpointId: dir }));
    expect(all.code).toBe("UNSUPPORTED_DTYPE");
    expect(all.message).toMatch(/"(b|c|q)".*torch\.(quint8|bits8|qint8)/);

    const quantized = await failureOf(loadStateDictFromKeys({ checkpointId: dir, keys: ["q"] }));
    expect(quantized.code).toBe("UNSUPPORTED_DTYPE");
    expect(quantized.message).toMatch(/"q".*torch\.qint8/);

    const asked = await failureOf(loadStateDictFromKeys({ checkpointId: dir, keys: ["a", "c"] }));
    expect(asked.code).toBe("UNSUPPORTED_DTYPE");
    expect(asked.message).toMatch(/"c".*torch\.bits8/);

    const withB = await failureOf(
      load({ a: emptyTensor("float32", [3, 4]), b: emptyTensor("uint8", [2, 3]) }, { checkpointId: dir }),
    );
    expect(withB.code).toBe("UNSUPPORTED_DTYPE");
    expect(withB.message).toMatch(/"b".*torch\.quint8/);

    const exported = await failureOf(exportSafetensors(dir, join(dir, "..", "st")));
    expect(exported.code).toBe("UNSUPPORTED_DTYPE");
    // A conversion would drop those tensors: refused, in every output format, before writing.
    for (const to of ["dcpjs", "torch", "safetensors"] as const) {
      const out = join(dir, "..", `converted-${to}`);
      const converted = await failureOf(convertCheckpoint(dir, out, { to }));
      expect(converted.code, to).toBe("UNSUPPORTED_DTYPE");
      expect(converted.message, to).toMatch(/torch\.(quint8|bits8|qint8)/);
      expect(await readdir(out).catch(() => []), to).toEqual([]);
    }
  }, 600_000);

  it("a quantized tensor's torch.save archive is refused as UNSUPPORTED_DTYPE naming the item and torch.qint8", async () => {
    const { dir } = await unknownCheckpoint();
    const bytes = new Uint8Array(await readFile(join(dir, "..", "q.pt")));
    let error: unknown;
    try {
      decodeTorchItem(bytes, "q", "q.pt");
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(CheckpointError);
    expect((error as CheckpointError).code).toBe("UNSUPPORTED_DTYPE");
    expect((error as CheckpointError).message).toMatch(/"q".*torch\.qint8/);
  }, 600_000);
});

describe("resharding new dtypes: saved on 2 ranks by rows, loaded on 3 ranks by columns", () => {
  it.each(["complex128", "float6_e3m2fn_x4", "float8_e4m3fn", "uint64", "complex32"] as const)(
    "%s, bit-exact",
    async (dtype) => {
      const dir = await tempDir();
      const full = randomTensor(dtype, [6, 7], 11);
      await allRanks(2, (pg) =>
        save(
          { w: shardTensor(full, { dim: 0, rank: pg.rank, worldSize: pg.size }) },
          { checkpointId: dir, processGroup: pg },
        ),
      );
      const loaded = await allRanks(3, async (pg) => {
        const sd = {
          w: shardTensor(emptyTensor(dtype, [6, 7]), {
            dim: 1,
            rank: pg.rank,
            worldSize: pg.size,
          }) as ShardedTensor,
        };
        await load(sd, { checkpointId: dir, processGroup: pg });
        return sd.w;
      });
      const shards = loaded.flatMap((s) => s.shards);
      expect(shards.map((s) => s.offsets[1])).toEqual([0, 3, 6]);
      for (const s of shards)
        expect(sameTensor(s.tensor, sliceTensor(full, s.offsets, s.tensor.shape))).toBe(true);
    },
  );

  it("a torch-saved float8_e5m2 tensor loads into 3 column shards, bit-exact", async () => {
    const root = await tempDir();
    const src = join(root, "ckpt");
    await runPeer("dtypes_peer.py", ["torch-save", src]);
    // torch's flat key "t.float8_e5m2" (its planner data keeps it flat); the target below nests it.
    const saved = await loadStateDictFromKeys({ checkpointId: src, keys: ["t.float8_e5m2"] });
    const full = saved["t.float8_e5m2"] as Tensor;
    expect(full.dtype).toBe("float8_e5m2");
    const loaded = await allRanks(3, async (pg) => {
      const sd = {
        t: {
          float8_e5m2: shardTensor(emptyTensor("float8_e5m2", [3, 4]), {
            dim: 1,
            rank: pg.rank,
            worldSize: pg.size,
          }),
        },
      };
      await load(sd, { checkpointId: src, processGroup: pg });
      return sd.t.float8_e5m2;
    });
    for (const s of loaded.flatMap((x) => x.shards))
      expect(sameTensor(s.tensor, sliceTensor(full, s.offsets, s.tensor.shape))).toBe(true);
  }, 600_000);
});
