import { readdir } from "node:fs/promises";
import {
  DefaultLoadPlanner,
  type DType,
  emptyTensor,
  load,
  loadStateDictFromKeys,
  type ProcessGroup,
  type ShardedTensor,
  save,
  shardTensor,
  sliceTensor,
  type Tensor,
} from "@dcpjs/core";
import { describe, expect, it } from "vitest";
import { allRanks } from "../support/ranks.js";
import { arange, randomTensor, sameTensor } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

/** An empty sharded tensor with this rank's chunk of `full`'s shape along `dim`. */
function emptyShard(dtype: DType, shape: number[], pg: ProcessGroup, dim: number): ShardedTensor {
  const zeros = emptyTensor(dtype, shape);
  return shardTensor(zeros, { dim, rank: pg.rank, worldSize: pg.size });
}

/** Checks that every shard of `st` equals the same box of `full`. */
function expectShardsOf(st: ShardedTensor, full: Tensor): void {
  for (const shard of st.shards) {
    expect(sameTensor(shard.tensor, sliceTensor(full, shard.offsets, shard.tensor.shape))).toBe(true);
  }
}

async function saveSharded(
  dir: string,
  full: Tensor,
  ranks: number,
  dim: number,
  extra: Record<string, unknown> = {},
) {
  await allRanks(ranks, (pg) =>
    save(
      { w: shardTensor(full, { dim, rank: pg.rank, worldSize: pg.size }), ...extra },
      { checkpointId: dir, processGroup: pg },
    ),
  );
}

describe("resharding round trips on in-process ranks", () => {
  it.each([
    [4, 3, 0, 0],
    [3, 4, 0, 0],
    [4, 3, 0, 1],
    [2, 5, 1, 0],
  ])(
    "saves with %i ranks and loads with %i ranks (save dim %i → load dim %i)",
    async (from, to, saveDim, loadDim) => {
      const dir = await tempDir();
      const full = randomTensor("float32", [12, 10], 3);
      await saveSharded(dir, full, from, saveDim);
      const loaded = await allRanks(to, async (pg) => {
        const sd = { w: emptyShard("float32", [12, 10], pg, loadDim) };
        await load(sd, { checkpointId: dir, processGroup: pg });
        return sd.w;
      });
      for (const st of loaded) expectShardsOf(st, full);
      expect(loaded.flatMap((s) => s.shards).length).toBeGreaterThan(0);
    },
  );

  it("loads a sharded checkpoint into one plain tensor, and a plain one into shards", async () => {
    const dir = await tempDir();
    const full = arange([9, 4]);
    await saveSharded(dir, full, 4, 0);
    const plain = { w: emptyTensor("float32", [9, 4]) };
    await load(plain, { checkpointId: dir });
    expect(sameTensor(plain.w, full)).toBe(true);

    const dir2 = await tempDir();
    await save({ w: full }, { checkpointId: dir2 });
    const shards = await allRanks(3, async (pg) => {
      const sd = { w: emptyShard("float32", [9, 4], pg, 1) };
      await load(sd, { checkpointId: dir2, processGroup: pg });
      return sd.w;
    });
    for (const st of shards) expectShardsOf(st, full);
  });

  it("handles 2-D uneven splits, 3-D tensors and 1-byte dtypes", async () => {
    const dir = await tempDir();
    const full = randomTensor("uint8", [7, 5, 3], 11);
    await saveSharded(dir, full, 3, 1);
    const loaded = await allRanks(4, async (pg) => {
      const sd = { w: emptyShard("uint8", [7, 5, 3], pg, 0) };
      await load(sd, { checkpointId: dir, processGroup: pg });
      return sd.w;
    });
    for (const st of loaded) expectShardsOf(st, full);
  });

  it("stores a tensor replicated on every rank once, and every rank loads it", async () => {
    const dir = await tempDir();
    const replicated = randomTensor("float64", [64], 5);
    const metas = await allRanks(4, (pg) =>
      save(
        { r: replicated, step: 10, mine: randomTensor("int32", [4], pg.rank + 1) },
        { checkpointId: dir, processGroup: pg },
      ),
    );
    const md = metas[0]!;
    const stored = [...md.storageData.values()].filter((s) => s.length === 64 * 8);
    expect(stored).toHaveLength(1);
    const loaded = await allRanks(2, async (pg) => {
      const sd = { r: emptyTensor("float64", [64]), step: 0 };
      await load(sd, {
        checkpointId: dir,
        processGroup: pg,
        planner: new DefaultLoadPlanner({ allowPartialLoad: true }),
      });
      return sd;
    });
    for (const sd of loaded) {
      expect(sameTensor(sd.r, replicated)).toBe(true);
      expect(sd.step).toBe(10);
    }
  });

  it("writes exactly threadCount files per rank, empty ones too", async () => {
    const dir = await tempDir();
    const { FileSystemWriter } = await import("@dcpjs/core");
    await allRanks(3, (pg) =>
      save(
        { w: shardTensor(randomTensor("float32", [6, 2]), { dim: 0, rank: pg.rank, worldSize: pg.size }) },
        { storageWriter: new FileSystemWriter({ path: dir, threadCount: 4 }), processGroup: pg },
      ),
    );
    const files = (await readdir(dir)).sort();
    expect(files).toHaveLength(3 * 4 + 1);
    expect(files).toContain(".metadata");
    for (let r = 0; r < 3; r++)
      for (let n = 0; n < 4; n++)
        expect(files.filter((f) => new RegExp(`^__${r}_${n}\\.[0-9a-f]{12}\\.distcp$`).test(f))).toHaveLength(
          1,
        );
  });

  it("loads a sharded checkpoint whole into a fresh state dict", async () => {
    const dir = await tempDir();
    const full = randomTensor("bfloat16", [5, 6], 2);
    await saveSharded(dir, full, 4, 1, { meta: { epoch: 3 } });
    const sd = await loadStateDictFromKeys({ checkpointId: dir });
    expect(sameTensor(sd.w as Tensor, full)).toBe(true);
    expect(sd.meta).toEqual({ epoch: 3 });
  });
});
