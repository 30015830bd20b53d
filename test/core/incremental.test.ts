import { readdir, readFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import {
  CheckpointError,
  ChecksumMismatchError,
  emptyTensor,
  load,
  type Metadata,
  type StateDict,
  save,
  shardTensor,
  type Tensor,
  tensor,
} from "@dcpjs/core";
import { METADATA_FILE } from "@dcpjs/core/extend";
import { inspectCheckpoint, verifyCheckpoint } from "@dcpjs/core/ops";
import { decodeMetadata } from "@dcpjs/core/testing";
import { decode } from "@msgpack/msgpack";
import { describe, expect, it } from "vitest";
import { formatInspectTable } from "../../packages/cli/src/commands/inspect.js";
import { flipStoredBits } from "../support/damage.js";
import { allRanks } from "../support/ranks.js";
import { randomTensor, sameTensor } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

/** A float32 tensor in shared memory (as `emptyTensor` allocates), filled from a seed. */
function sharedTensor(shape: readonly number[], seed: number): Tensor {
  const t = emptyTensor("float32", shape);
  const data = t.data as Float32Array;
  for (let i = 0; i < data.length; i++) data[i] = ((i * 2654435761 + seed * 97) % 1000) / 7;
  return t;
}

async function readMetadata(dir: string): Promise<Metadata> {
  return decodeMetadata(await readFile(join(dir, METADATA_FILE)));
}

/** Bytes of the data files a checkpoint folder holds itself. */
async function ownDataBytes(dir: string): Promise<number> {
  let bytes = 0;
  for (const f of await readdir(dir)) if (f.endsWith(".distcp")) bytes += (await stat(join(dir, f))).size;
  return bytes;
}

/** The `formatVersion` of a checkpoint's `.metadata` (its msgpack body, before the CRC trailer). */
async function layoutVersion(dir: string): Promise<unknown> {
  const raw = await readFile(join(dir, METADATA_FILE));
  return (decode(raw.subarray(0, raw.byteLength - 4)) as { formatVersion: unknown }).formatVersion;
}

function baseOf(md: Metadata, fqn: string): string | undefined {
  const [, info] = [...md.storageData].find(([k]) => k.startsWith(`${fqn}\u0000`))!;
  return info.baseCheckpoint;
}

function state(seed: { a: number; b: number; c: number }, step: number): StateDict {
  return {
    model: {
      a: randomTensor("float32", [16, 8], seed.a),
      b: randomTensor("int64", [5], seed.b),
      big: sharedTensor([600, 1024], seed.c), // 2.3 MiB in shared memory: hashed on a worker
    },
    step,
  };
}

function target(): StateDict {
  return {
    model: {
      a: emptyTensor("float32", [16, 8]),
      b: emptyTensor("int64", [5]),
      big: emptyTensor("float32", [600, 1024]),
    },
    step: 0,
  };
}

describe("incremental checkpoints", () => {
  it("records a content hash for every item of every save (layout 2 without references)", async () => {
    const root = await tempDir();
    await save(state({ a: 1, b: 2, c: 3 }, 1), { checkpointId: join(root, "step-1") });
    const md = await readMetadata(join(root, "step-1"));
    for (const info of md.storageData.values()) {
      expect(info.contentHash).toMatch(/^[0-9a-f]{32}$/);
      expect(info.baseCheckpoint).toBeUndefined();
    }
    expect(await layoutVersion(join(root, "step-1"))).toBe(2);
  });

  it("writes only changed items, references the others, and loads bit for bit", async () => {
    const root = await tempDir();
    const first = state({ a: 1, b: 2, c: 3 }, 100);
    await save(first, { checkpointId: join(root, "step-100") });
    const full = await ownDataBytes(join(root, "step-100"));
    const second = state({ a: 9, b: 2, c: 3 }, 110); // a and the step change
    await save(second, { checkpointId: join(root, "step-110"), base: join(root, "step-100") });
    const md = await readMetadata(join(root, "step-110"));
    expect(baseOf(md, "model.a")).toBeUndefined();
    expect(baseOf(md, "step")).toBeUndefined();
    expect(baseOf(md, "model.b")).toBe("step-100");
    expect(baseOf(md, "model.big")).toBe("step-100");
    expect(await ownDataBytes(join(root, "step-110"))).toBeLessThan(full / 10);
    // References make it layout 3, which a dcpjs that knows only 1 and 2 refuses.
    expect(await layoutVersion(join(root, "step-110"))).toBe(3);
    const dst = target();
    await load(dst, { checkpointId: join(root, "step-110") });
    const m = dst.model as Record<string, Tensor>;
    const src = second.model as Record<string, Tensor>;
    for (const k of ["a", "b", "big"]) expect(sameTensor(m[k]!, src[k]!)).toBe(true);
    expect(dst.step).toBe(110);
  });

  it("keeps a replaced checkpoint's files that a sibling references when the checkpoint is saved over", async () => {
    const root = await tempDir();
    const base = join(root, "step-100");
    await save(state({ a: 1, b: 2, c: 3 }, 100), { checkpointId: base });
    const second = state({ a: 9, b: 2, c: 3 }, 110);
    await save(second, { checkpointId: join(root, "step-110"), base });
    // an overwrite of the base that changes everything: its old files are what step-110 reads
    await save(state({ a: 4, b: 5, c: 6 }, 100), { checkpointId: base });
    expect((await verifyCheckpoint(join(root, "step-110"))).damaged).toEqual([]);
    const dst = target();
    await load(dst, { checkpointId: join(root, "step-110") });
    expect(
      sameTensor((dst.model as Record<string, Tensor>).big!, (second.model as Record<string, Tensor>).big!),
    ).toBe(true);
    // what nothing references is removed as before: once step-110 is saved over without a base,
    // the base's next overwrite removes the files it replaces
    await save(state({ a: 7, b: 8, c: 9 }, 110), { checkpointId: join(root, "step-110") });
    const replaced = new Set([...(await readMetadata(base)).storageData.values()].map((i) => i.relativePath));
    await save(state({ a: 1, b: 1, c: 1 }, 100), { checkpointId: base });
    expect((await readdir(base)).filter((f) => replaced.has(f))).toEqual([]);
  });

  it("writes a changed large item (hashed on a worker) and references an unchanged small one", async () => {
    const root = await tempDir();
    await save(state({ a: 1, b: 2, c: 3 }, 100), { checkpointId: join(root, "step-100") });
    const second = state({ a: 1, b: 2, c: 4 }, 100);
    await save(second, { checkpointId: join(root, "step-110"), base: join(root, "step-100") });
    const md = await readMetadata(join(root, "step-110"));
    expect(baseOf(md, "model.big")).toBeUndefined();
    expect(baseOf(md, "model.a")).toBe("step-100");
    expect(baseOf(md, "step")).toBe("step-100");
    const dst = target();
    await load(dst, { checkpointId: join(root, "step-110") });
    expect(
      sameTensor((dst.model as Record<string, Tensor>).big!, (second.model as Record<string, Tensor>).big!),
    ).toBe(true);
  });

  it("references items declared unchanged without hashing them", async () => {
    const root = await tempDir();
    const first = state({ a: 1, b: 2, c: 3 }, 100);
    await save(first, { checkpointId: join(root, "step-100") });
    // a changed, but is declared frozen: the base's bytes are what the checkpoint holds.
    await save(state({ a: 5, b: 2, c: 3 }, 110), {
      checkpointId: join(root, "step-110"),
      base: join(root, "step-100"),
      unchanged: ["model.a"],
    });
    const dst = target();
    await load(dst, { checkpointId: join(root, "step-110") });
    expect(
      sameTensor((dst.model as Record<string, Tensor>).a!, (first.model as Record<string, Tensor>).a!),
    ).toBe(true);
    // A predicate works too; an item the base lacks fails, naming it.
    const other = { model: { c: randomTensor("float32", [3], 1) } };
    await expect(
      save(other, {
        checkpointId: join(root, "step-120"),
        base: join(root, "step-100"),
        unchanged: (fqn) => fqn.startsWith("model."),
      }),
    ).rejects.toThrow(
      /Expected base step-100 to hold "model.c" at \[0\] as float32 \[3\], declared unchanged/,
    );
  });

  it("flattens chains: a reference names the checkpoint that holds the bytes", async () => {
    const root = await tempDir();
    await save(state({ a: 1, b: 2, c: 3 }, 100), { checkpointId: join(root, "step-100") });
    await save(state({ a: 4, b: 2, c: 3 }, 110), {
      checkpointId: join(root, "step-110"),
      base: join(root, "step-100"),
    });
    const third = state({ a: 4, b: 7, c: 3 }, 120);
    await save(third, { checkpointId: join(root, "step-120"), base: join(root, "step-110") });
    const md = await readMetadata(join(root, "step-120"));
    expect(baseOf(md, "model.big")).toBe("step-100");
    expect(baseOf(md, "model.a")).toBe("step-110");
    expect(baseOf(md, "model.b")).toBeUndefined();
    const dst = target();
    await load(dst, { checkpointId: join(root, "step-120") });
    const m = dst.model as Record<string, Tensor>;
    const src = third.model as Record<string, Tensor>;
    for (const k of ["a", "b", "big"]) expect(sameTensor(m[k]!, src[k]!)).toBe(true);
  });

  it("shows the referenced checkpoints in dcp inspect", async () => {
    const root = await tempDir();
    await save(state({ a: 1, b: 2, c: 3 }, 100), { checkpointId: join(root, "step-100") });
    await save(state({ a: 4, b: 2, c: 3 }, 110), {
      checkpointId: join(root, "step-110"),
      base: join(root, "step-100"),
    });
    await save(state({ a: 4, b: 7, c: 3 }, 120), {
      checkpointId: join(root, "step-120"),
      base: join(root, "step-110"),
    });
    const report = await inspectCheckpoint(join(root, "step-120"));
    expect(report.references).toEqual([
      { checkpoint: "step-100", items: 1, bytes: 600 * 1024 * 4 },
      { checkpoint: "step-110", items: 1, bytes: 16 * 8 * 4 },
    ]);
    expect(report.totals.files).toBe(1);
    expect(formatInspectTable(report)).toMatch(
      /\nreferences: step-100 \(1 item, 2\.5 MB\), step-110 \(1 item, 512 B\)$/,
    );
    expect((await inspectCheckpoint(join(root, "step-100"))).references).toEqual([]);
  });

  it("saves incrementally from several ranks and loads resharded", async () => {
    const root = await tempDir();
    const w = randomTensor("float32", [8, 64], 3);
    const v = randomTensor("float32", [8, 64], 4);
    const saveAll = (id: string, t: Tensor, base?: string) =>
      allRanks(2, (pg) =>
        save(
          {
            w: shardTensor(w, { dim: 0, rank: pg.rank, worldSize: 2 }),
            v: shardTensor(t, { dim: 0, rank: pg.rank, worldSize: 2 }),
          },
          { checkpointId: join(root, id), processGroup: pg, ...(base ? { base: join(root, base) } : {}) },
        ),
      );
    await saveAll("step-100", v);
    const v2 = tensor("float32", [8, 64], Float32Array.from(v.data as Float32Array));
    (v2.data as Float32Array)[5 * 64] = 42; // one element of rank 1's shard of v
    await saveAll("step-110", v2, "step-100");
    const md = await readMetadata(join(root, "step-110"));
    const refs = [...md.storageData].map(([k, i]) => [k.replace("\u0000", "@"), i.baseCheckpoint ?? "own"]);
    expect(refs.sort()).toEqual([
      ["v@0,0", "step-100"],
      ["v@4,0", "own"],
      ["w@0,0", "step-100"],
      ["w@4,0", "step-100"],
    ]);
    // One rank loads the whole tensors; three ranks load other row shards.
    const dst = { w: emptyTensor("float32", [8, 64]), v: emptyTensor("float32", [8, 64]) };
    await load(dst, { checkpointId: join(root, "step-110") });
    expect(sameTensor(dst.w, w)).toBe(true);
    expect(sameTensor(dst.v, v2)).toBe(true);
    await allRanks(4, async (pg) => {
      const mine = {
        v: shardTensor(emptyTensor("float32", [8, 64]), { dim: 0, rank: pg.rank, worldSize: 4 }),
      };
      await load(mine, { checkpointId: join(root, "step-110"), processGroup: pg });
      expect(
        sameTensor(
          mine.v.shards[0]!.tensor,
          shardTensor(v2, { dim: 0, rank: pg.rank, worldSize: 4 }).shards[0]!.tensor,
        ),
      ).toBe(true);
    });
  });

  it("reports a flipped byte in a referenced base file as CHECKSUM_MISMATCH naming the fqn and the base's file", async () => {
    const root = await tempDir();
    await save(state({ a: 1, b: 2, c: 3 }, 100), { checkpointId: join(root, "step-100") });
    await save(state({ a: 9, b: 2, c: 3 }, 110), {
      checkpointId: join(root, "step-110"),
      base: join(root, "step-100"),
    });
    const info = await flipStoredBits(join(root, "step-100"), "model.b\u0000", 3);
    const failure = await load(target(), { checkpointId: join(root, "step-110") }).then(
      () => undefined,
      (e: unknown) => e as { failures?: { error: Error }[] } & Error,
    );
    const error = failure?.failures?.[0]?.error ?? failure;
    expect(error).toBeInstanceOf(ChecksumMismatchError);
    expect((error as ChecksumMismatchError).code).toBe("CHECKSUM_MISMATCH");
    expect((error as ChecksumMismatchError).fqn).toBe("model.b");
    expect((error as Error).message).toContain(`../step-100/${info.relativePath}`);
  });

  it("fails with a typed error naming a missing base, on save and on load", async () => {
    const root = await tempDir();
    const saving = await save(state({ a: 1, b: 2, c: 3 }, 1), {
      checkpointId: join(root, "step-110"),
      base: join(root, "step-100"),
    }).catch((e: unknown) => e);
    expect(saving).toBeInstanceOf(CheckpointError);
    expect((saving as CheckpointError).code).toBe("NOT_FOUND");
    expect((saving as Error).message).toContain("step-100");

    await save(state({ a: 1, b: 2, c: 3 }, 100), { checkpointId: join(root, "step-100") });
    await save(state({ a: 9, b: 2, c: 3 }, 110), {
      checkpointId: join(root, "step-110"),
      base: join(root, "step-100"),
    });
    await rm(join(root, "step-100"), { recursive: true });
    const loading = await load(target(), { checkpointId: join(root, "step-110") }).catch((e: unknown) => e);
    expect(loading).toBeInstanceOf(CheckpointError);
    expect((loading as CheckpointError).code).toBe("NOT_FOUND");
    expect((loading as Error).message).toMatch(/base checkpoint step-100/);
  });

  it("refuses a base that is not a sibling, the checkpoint itself, or a torch save", async () => {
    const root = await tempDir();
    await save(state({ a: 1, b: 2, c: 3 }, 100), { checkpointId: join(root, "step-100") });
    const sd = state({ a: 1, b: 2, c: 3 }, 1);
    await expect(
      save(sd, { checkpointId: join(root, "sub", "step-110"), base: join(root, "step-100") }),
    ).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
      message: expect.stringMatching(/Expected base to be a sibling/),
    });
    await expect(
      save(sd, { checkpointId: join(root, "step-100"), base: join(root, "step-100") }),
    ).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(save(sd, { checkpointId: join(root, "x"), unchanged: ["a"] })).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
    });
  });
});
