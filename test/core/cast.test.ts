import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type CheckpointError,
  CheckpointException,
  DefaultLoadPlanner,
  type DType,
  emptyTensor,
  FileSystemReader,
  load,
  type ProcessGroup,
  type ShardedTensor,
  save,
  shardTensor,
  type Tensor,
  tensorBytes,
} from "@dcpjs/core";
import { boxCast, castBox, castRefusal } from "@dcpjs/core/extend";
import { castOnWorker, workerTasksRun } from "@dcpjs/core/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runPeer, torchPython } from "../support/python-peer.js";
import { allRanks } from "../support/ranks.js";
import { hexOf, randomTensor } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

/** What cast_peer.py's `table` writes: each source table's bytes, and torch's copy_ result per destination. */
interface CastTable {
  readonly sources: Record<string, { hex: string; n: number }>;
  readonly results: Record<string, Record<string, string>>;
  /** Cells where torch's own loops (a whole table, tiled, element by element) disagree: what each gave. */
  readonly divergent: { src: string; dst: string; index: number; seen: string[] }[];
  /** Pairs torch's `copy_` raised on: [source, destination, its message]. */
  readonly unsupported: [string, string, string][];
}

type Described = Record<string, { dtype: string; shape: number[]; hex: string }>;

let table: CastTable;

beforeAll(async () => {
  await torchPython();
  const out = join(await tempDir(), "table.json");
  await runPeer("cast_peer.py", ["table", out]);
  table = JSON.parse(await readFile(out, "utf8")) as CastTable;
}, 600_000);

/** dcpjs's cast of a whole source table, on this thread. */
function castTable(src: string, dst: string, bytes: Uint8Array, n: number, width: number): Uint8Array {
  const out = new Uint8Array(n * width);
  castBox(src, bytes, dst, out, boxCast([n], [0], [n], [0], [n])!);
  return out;
}

describe("the cast table matches torch 2.13's copy_ bit for bit", () => {
  it("every (source, destination) pair of every dtype torch casts, on every special value", () => {
    const divergent = new Map(table.divergent.map((d) => [`${d.src}>${d.dst}>${d.index}`, d.seen]));
    let cells = 0;
    const mismatches: string[] = [];
    for (const [src, { hex, n }] of Object.entries(table.sources)) {
      const bytes = new Uint8Array(Buffer.from(hex, "hex"));
      const srcWidth = bytes.length / n;
      for (const [dst, want] of Object.entries(table.results[src]!)) {
        expect(castRefusal(src, dst)).toBeUndefined();
        const width = want.length / 2 / n;
        const got = Buffer.from(castTable(src, dst, bytes, n, width)).toString("hex");
        for (let i = 0; i < n; i++) {
          cells++;
          const g = got.slice(i * width * 2, (i + 1) * width * 2);
          // Where torch's own loops disagree (docs/format.md lists the cells), dcpjs gives one of theirs.
          const seen = divergent.get(`${src}>${dst}>${i}`);
          const w = want.slice(i * width * 2, (i + 1) * width * 2);
          if (seen ? !seen.includes(g) : g !== w)
            mismatches.push(
              `${src} ${Buffer.from(bytes.subarray(i * srcWidth, (i + 1) * srcWidth)).toString("hex")} → ${dst}: expected ${w}, got ${g}`,
            );
        }
      }
    }
    expect(mismatches.slice(0, 20)).toEqual([]);
    expect(cells).toBeGreaterThan(40_000);
    // Every pair was tabled by torch, or torch refused it and so does dcpjs (or it is complex → real).
    const dtypes = Object.keys(table.sources);
    const complex = (d: string) => d.startsWith("complex");
    const refusedByTorch = new Set(table.unsupported.map(([s, d]) => `${s}>${d}`));
    for (const [s, d] of table.unsupported) expect(castRefusal(s, d), `${s} → ${d}`).toBeDefined();
    for (const src of dtypes)
      for (const dst of dtypes)
        if (!(complex(src) && !complex(dst)) && !refusedByTorch.has(`${src}>${dst}`))
          expect(table.results[src]![dst], `${src} → ${dst}`).toBeDefined();
    // Only NaNs, and out-of-range or NaN floats cast to uint32 (C++ undefined behaviour), diverge.
    const kinds = new Set(table.divergent.map((d) => (d.dst === "uint32" ? "uint32" : `${d.src}>${d.dst}`)));
    expect([...kinds].sort()).toEqual(["float16>float32", "float64>bfloat16", "uint32"]);
  });

  it("refuses complex → real, naming both dtypes and why", () => {
    for (const src of ["complex32", "complex64", "complex128"])
      for (const dst of ["float32", "bfloat16", "int64", "bool"])
        expect(castRefusal(src, dst)).toMatch(/would drop the imaginary part/);
    expect(castRefusal("float32", "complex64")).toBeUndefined();
    expect(castRefusal("qint8", "float32")).toBe("dcpjs cannot cast from qint8");
  });

  it("casts a box on a worker thread exactly as on the calling thread", async () => {
    const { hex, n } = table.sources.bfloat16!;
    const rows = 300;
    const src = new Uint8Array(new SharedArrayBuffer(rows * n * 2));
    for (let r = 0; r < rows; r++) src.set(Buffer.from(hex, "hex"), r * n * 2);
    // A column box of the [rows, n] source into the middle of a wider float32 destination.
    const box = boxCast([rows, n], [0, 3], [rows, n + 4], [0, 5], [rows, n - 3])!;
    const here = new Uint8Array(rows * (n + 4) * 4);
    castBox("bfloat16", src, "float32", here, box);
    const there = new Uint8Array(new SharedArrayBuffer(here.length));
    const before = workerTasksRun();
    await castOnWorker("bfloat16", src, "float32", there, box);
    expect(workerTasksRun()).toBe(before + 1);
    expect(Buffer.from(there).equals(Buffer.from(here))).toBe(true);
  });
});

describe("cast on load, as DCP's dcp.load (its reader ends in target.copy_(saved))", () => {
  let dir: string;
  let saved: Described;

  let root: string;

  // One torch checkpoint for the block (tempDir's folders go after each test).
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), "dcpjs-cast-"));
    dir = join(root, "ckpt");
    await runPeer("cast_peer.py", ["save", dir]);
    saved = JSON.parse(await readFile(join(root, "saved.json"), "utf8")) as Described;
  }, 600_000);
  afterAll(() => rm(root, { recursive: true, force: true }));

  /** torch's dcp.load of the checkpoint into zeroed targets of these dtypes. */
  async function torchLoads(spec: Record<string, DType>): Promise<Described> {
    const root = await tempDir();
    await writeFile(join(root, "spec.json"), JSON.stringify(spec));
    await runPeer("cast_peer.py", ["load", dir, join(root, "spec.json"), join(root, "out.json")]);
    return JSON.parse(await readFile(join(root, "out.json"), "utf8")) as Described;
  }

  const toFloat32 = {
    bf16: "float32",
    f16: "float32",
    f64: "float32",
    i64: "float32",
    i32: "float32",
    u8: "float32",
    b: "float32",
  } as const satisfies Record<string, DType>;
  const others = {
    bf16: "float16",
    f16: "bfloat16",
    f64: "int32",
    i64: "int8",
    i32: "float64",
    u8: "bool",
    b: "int64",
  } as const satisfies Record<string, DType>;

  it.each([
    ["float32 targets", toFloat32],
    ["targets of other dtypes", others],
  ] as const)(
    "torch-saved bf16/fp16/float64/int/bool tensors load into %s bit-exact with torch's dcp.load",
    async (_, spec) => {
      const want = await torchLoads(spec);
      for (const workerMinBytes of [Number.POSITIVE_INFINITY, 0]) {
        const target = Object.fromEntries(
          Object.entries(spec).map(([fqn, dtype]) => [fqn, emptyTensor(dtype, saved[fqn]!.shape)]),
        );
        await load(target, { storageReader: new FileSystemReader({ path: dir, workerMinBytes }) });
        for (const [fqn, t] of Object.entries(target)) {
          expect(t.dtype).toBe(spec[fqn as keyof typeof spec]);
          expect(hexOf(t), `${fqn} (workerMinBytes ${workerMinBytes})`).toBe(want[fqn]!.hex);
        }
      }
    },
  );

  it("resharded: column shards of float32 on 3 ranks receive their boxes of the bf16 tensors, cast", async () => {
    const want = await torchLoads(toFloat32);
    const shards = await allRanks(3, async (pg: ProcessGroup) => {
      const target: Record<string, ShardedTensor> = {};
      for (const fqn of Object.keys(toFloat32))
        target[fqn] = shardTensor(emptyTensor("float32", saved[fqn]!.shape), {
          dim: 1,
          rank: pg.rank,
          worldSize: pg.size,
        });
      await load(target, { checkpointId: dir, processGroup: pg });
      return target;
    });
    for (const fqn of Object.keys(toFloat32)) {
      const [rows, cols] = saved[fqn]!.shape as [number, number];
      const whole = new Float32Array(new Uint8Array(Buffer.from(want[fqn]!.hex, "hex")).buffer);
      for (const target of shards)
        for (const shard of target[fqn]!.shards) {
          const [, c0] = shard.offsets as [number, number];
          const width = shard.tensor.shape[1]!;
          const expected = new Float32Array(rows * width);
          for (let r = 0; r < rows; r++)
            expected.set(whole.subarray(r * cols + c0, r * cols + c0 + width), r * width);
          expect(hexOf(shard.tensor), fqn).toBe(Buffer.from(expected.buffer).toString("hex"));
        }
    }
  });

  it("strictDtype: true refuses as before, with DTYPE_MISMATCH naming the tensor and both dtypes", async () => {
    const target = { bf16: emptyTensor("float32", saved.bf16!.shape) };
    const error = await load(target, { checkpointId: dir, strictDtype: true }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(CheckpointException);
    const failure = (error as CheckpointException).failures[0]!.error as CheckpointError;
    expect(failure.code).toBe("DTYPE_MISMATCH");
    expect(failure.message).toContain("saved bfloat16 and current: float32 for bf16");
    const planner = new DefaultLoadPlanner({ strictDtype: true });
    await expect(load(target, { checkpointId: dir, planner })).rejects.toMatchObject({
      code: "DTYPE_MISMATCH",
    });
    // Both ways at once would leave one silently ignored: refused.
    await expect(
      load(target, { checkpointId: dir, planner: new DefaultLoadPlanner(), strictDtype: true }),
    ).rejects.toMatchObject({ code: "INVALID_ARGUMENT", message: expect.stringContaining("got both") });
  });
});

describe("casts that cannot be", () => {
  it("complex → real through load is DTYPE_MISMATCH naming the tensor and both dtypes", async () => {
    const dir = join(await tempDir(), "ckpt");
    await save({ z: randomTensor("complex64", [4], 3) }, { checkpointId: dir });
    await expect(load({ z: emptyTensor("float32", [4]) }, { checkpointId: dir })).rejects.toMatchObject({
      code: "DTYPE_MISMATCH",
      message: expect.stringMatching(/complex64.*float32.*\bz\b/),
    });
  });

  it("a planner whose resolveTensor hands the reader an uncastable target gets a coded DTYPE_MISMATCH, never a bare Error", async () => {
    const dir = join(await tempDir(), "ckpt");
    await save({ z: randomTensor("complex64", [4], 3) }, { checkpointId: dir });
    const wrong = emptyTensor("float32", [4]);
    class WrongTarget extends DefaultLoadPlanner {
      override resolveTensor(): Tensor {
        return wrong;
      }
    }
    const error = await load(
      { z: emptyTensor("complex64", [4]) },
      { checkpointId: dir, planner: new WrongTarget() },
    ).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ code: "DTYPE_MISMATCH", message: expect.stringContaining('"z"') });
    expect(() =>
      castBox(
        "complex64",
        new Uint8Array(8),
        "float32",
        new Uint8Array(4),
        boxCast([1], [0], [1], [0], [1])!,
      ),
    ).toThrow(expect.objectContaining({ code: "DTYPE_MISMATCH" }));
  });
});

describe("cast on load of dcpjs checkpoints", () => {
  it("a part of a large bf16 chunk (its checksum blocks alone) lands cast in row shards, on and off worker threads", async () => {
    const dir = join(await tempDir(), "ckpt");
    const full = randomTensor("bfloat16", [1024, 1536], 7); // 3 MiB: three 1 MiB checksum blocks
    await save({ w: full }, { checkpointId: dir });
    const expected = emptyTensor("float32", full.shape);
    castBox(
      "bfloat16",
      tensorBytes(full),
      "float32",
      tensorBytes(expected),
      boxCast([1024, 1536], [0, 0], [1024, 1536], [0, 0], [1024, 1536])!,
    );
    /** Row shards of `dtype` on 4 ranks, each reading its own blocks; and the worker tasks the load ran. */
    const loadShards = async (dtype: DType, workerMinBytes: number) => {
      const before = workerTasksRun();
      const loaded = await allRanks(4, async (pg) => {
        const target = {
          w: shardTensor(emptyTensor(dtype, full.shape), { dim: 0, rank: pg.rank, worldSize: pg.size }),
        };
        const storageReader = new FileSystemReader({ path: dir, workerMinBytes, sharedReadBytes: 0 });
        await load(target, { storageReader, processGroup: pg });
        return target.w;
      });
      return { loaded, tasks: workerTasksRun() - before };
    };
    // The same load without a cast hands its box copies to workers: the casting one hands its casts.
    const copies = (await loadShards("bfloat16", 0)).tasks;
    expect(copies).toBeGreaterThan(0);
    for (const workerMinBytes of [Number.POSITIVE_INFINITY, 0]) {
      const { loaded, tasks } = await loadShards("float32", workerMinBytes);
      expect(tasks).toBe(workerMinBytes === 0 ? copies : 0);
      for (const st of loaded)
        for (const shard of st.shards) {
          const rows = shard.tensor.shape[0]!;
          const start = shard.offsets[0]! * 1536 * 4;
          expect(
            Buffer.from(tensorBytes(shard.tensor)).equals(
              Buffer.from(tensorBytes(expected).subarray(start, start + rows * 1536 * 4)),
            ),
          ).toBe(true);
        }
    }
  });

  it("bfloat16 → float32 → bfloat16 through two checkpoints gives the same bits (NaNs as torch makes them)", async () => {
    const dir = join(await tempDir(), "ckpt");
    const w: Tensor = randomTensor("bfloat16", [64, 33], 3);
    await save({ w }, { checkpointId: dir });
    const wide = { w: emptyTensor("float32", w.shape) };
    await load(wide, { checkpointId: dir });
    const dir2 = join(await tempDir(), "ckpt");
    await save(wide, { checkpointId: dir2 });
    const back = { w: emptyTensor("bfloat16", w.shape) };
    await load(back, { checkpointId: dir2 });
    // bfloat16 → float32 is exact, and back again gives the same bits; a NaN comes back 0xffff (torch's float32 → bfloat16).
    const a = new Uint16Array(tensorBytes(w).slice().buffer);
    const b = new Uint16Array(tensorBytes(back.w).slice().buffer);
    for (let i = 0; i < a.length; i++) {
      const nan = (a[i]! & 0x7f80) === 0x7f80 && (a[i]! & 0x7f) !== 0;
      expect(b[i]).toBe(nan ? 0xffff : a[i]);
    }
  });
});
