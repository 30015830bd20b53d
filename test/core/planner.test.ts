import type { Metadata } from "@dcpjs/core";
import type { ChunkStorageMetadata, SavePlan, TensorStorageMetadata, WriteItem } from "@dcpjs/core/extend";
import {
  createGlobalSavePlan,
  createReadItemsForChunkList,
  createWriteItems,
  dedupSavePlans,
  metadataIndexEquals,
  validateGlobalPlan,
} from "@dcpjs/core/testing";
import { describe, expect, it } from "vitest";

function md1d(size: number, chunkSizes: number[]): TensorStorageMetadata {
  let off = 0;
  const chunks = chunkSizes.map((s) => {
    const c = { offsets: [off], sizes: [s] };
    off += s;
    return c;
  });
  return { type: "tensor", properties: { dtype: "float32" }, size: [size], chunks };
}

function even(size: number, ranks: number): ChunkStorageMetadata[] {
  const per = size / ranks;
  return Array.from({ length: ranks }, (_, r) => ({ offsets: [r * per], sizes: [per] }));
}

type Vector = [dest: number, storageIdx: number, storage: number, length: number];
function summarise(items: ReturnType<typeof createReadItemsForChunkList>): Vector[] {
  return items.map((i) => [i.destOffsets[0]!, i.storageIndex.index!, i.storageOffsets[0]!, i.lengths[0]!]);
}

describe("resharding read items (DCP's create_read_items_for_chunk_list vectors)", () => {
  it("loads 128 elements saved by 8 ranks into 4 ranks: two whole saved chunks per rank", () => {
    const md = md1d(128, Array(8).fill(16));
    even(128, 4).forEach((local, r) => {
      expect(summarise(createReadItemsForChunkList("t", md, [local]))).toEqual([
        [0, 2 * r, 0, 16],
        [16, 2 * r + 1, 0, 16],
      ]);
    });
  });

  it("loads 128 elements saved by 4 ranks into 8 ranks: one half of a saved chunk per rank", () => {
    const md = md1d(128, Array(4).fill(32));
    even(128, 8).forEach((local, r) => {
      expect(summarise(createReadItemsForChunkList("t", md, [local]))).toEqual([
        [0, r >> 1, (r % 2) * 16, 16],
      ]);
    });
  });

  it("loads 120 elements saved by 4 ranks into 3 ranks", () => {
    const md = md1d(120, Array(4).fill(30));
    const got = even(120, 3).map((local) => summarise(createReadItemsForChunkList("t", md, [local])));
    expect(got).toEqual([
      [
        [0, 0, 0, 30],
        [30, 1, 0, 10],
      ],
      [
        [0, 1, 10, 20],
        [20, 2, 0, 20],
      ],
      [
        [0, 2, 20, 10],
        [10, 3, 0, 30],
      ],
    ]);
  });

  it("reads a 16-element tensor at offset 4, size 7 from chunks [0,8) and [8,16)", () => {
    const md = md1d(16, [8, 8]);
    const items = createReadItemsForChunkList("foo", md, [{ offsets: [4], sizes: [7] }]);
    expect(items).toHaveLength(2);
    expect(metadataIndexEquals(items[0]!.destIndex, { fqn: "foo", offset: [4] })).toBe(true);
    expect(metadataIndexEquals(items[0]!.storageIndex, { fqn: "foo", offset: [0] })).toBe(true);
    expect([items[0]!.destOffsets, items[0]!.storageOffsets, items[0]!.lengths]).toEqual([[0], [4], [4]]);
    expect(metadataIndexEquals(items[1]!.storageIndex, { fqn: "foo", offset: [8] })).toBe(true);
    expect([items[1]!.destOffsets, items[1]!.storageOffsets, items[1]!.lengths]).toEqual([[4], [0], [3]]);
  });

  it("intersects 2-D boxes: a column block against row blocks", () => {
    const md: TensorStorageMetadata = {
      type: "tensor",
      properties: { dtype: "float32" },
      size: [4, 6],
      chunks: [
        { offsets: [0, 0], sizes: [2, 6] },
        { offsets: [2, 0], sizes: [2, 6] },
      ],
    };
    const items = createReadItemsForChunkList("m", md, [{ offsets: [0, 2], sizes: [4, 3] }]);
    expect(items.map((i) => [i.destOffsets, i.storageOffsets, i.lengths])).toEqual([
      [
        [0, 0],
        [0, 2],
        [2, 3],
      ],
      [
        [2, 0],
        [0, 2],
        [2, 3],
      ],
    ]);
  });
});

describe("MetadataIndex", () => {
  it("ignores the index hint in equality", () => {
    expect(
      metadataIndexEquals({ fqn: "a", offset: [1, 2], index: 0 }, { fqn: "a", offset: [1, 2], index: 7 }),
    ).toBe(true);
    expect(metadataIndexEquals({ fqn: "a", offset: [1, 2] }, { fqn: "a", offset: [1, 3] })).toBe(false);
    expect(metadataIndexEquals({ fqn: "a", offset: null }, { fqn: "b", offset: null })).toBe(false);
  });
});

function tensorItem(fqn: string, size: number[], chunk?: ChunkStorageMetadata): WriteItem {
  const c = chunk ?? { offsets: size.map(() => 0), sizes: size };
  return {
    index: { fqn, offset: c.offsets },
    type: chunk ? "shard" : "tensor",
    tensorData: { chunk: c, properties: { dtype: "float32" }, size },
  };
}
const bytesItem = (fqn: string): WriteItem => ({ index: { fqn, offset: null }, type: "bytes" });
const fqns = (plans: SavePlan[]) => plans.map((p) => p.items.map((i) => i.index.fqn));

describe("dedup of replicated items (DCP's dedup_save_plans)", () => {
  it("gives a replicated item to the holder with the smallest planned size, lowest rank on ties", () => {
    const r = tensorItem("r", [100]);
    const plans: SavePlan[] = [{ items: [r] }, { items: [r, bytesItem("v")] }, { items: [bytesItem("v")] }];
    expect(fqns(dedupSavePlans(plans))).toEqual([["r"], ["v"], []]);
  });

  it("moves a replicated item away from a rank already loaded with a large unique tensor", () => {
    const plans: SavePlan[] = [
      { items: [tensorItem("big", [1000]), tensorItem("r", [100])] },
      { items: [tensorItem("r", [100])] },
    ];
    expect(fqns(dedupSavePlans(plans))).toEqual([["big"], ["r"]]);
  });

  it("spreads many replicated items over ranks by planned size", () => {
    const items = ["a", "b", "c", "d"].map((f) => tensorItem(f, [10]));
    const plans: SavePlan[] = [{ items }, { items }];
    expect(fqns(dedupSavePlans(plans))).toEqual([
      ["a", "c"],
      ["b", "d"],
    ]);
  });

  it("gives everything to the lowest rank with saveToLowestRank", () => {
    const items = ["a", "b"].map((f) => tensorItem(f, [10]));
    expect(fqns(dedupSavePlans([{ items }, { items }], true))).toEqual([["a", "b"], []]);
  });

  it("keeps shards at different offsets as distinct items", () => {
    const s0 = tensorItem("s", [8], { offsets: [0], sizes: [4] });
    const s1 = tensorItem("s", [8], { offsets: [4], sizes: [4] });
    expect(dedupSavePlans([{ items: [s0] }, { items: [s1] }]).map((p) => p.items.length)).toEqual([1, 1]);
  });
});

describe("global save plan", () => {
  it("rewrites each item's index hint to its chunk's position", () => {
    const plans: SavePlan[] = [
      { items: [tensorItem("s", [8], { offsets: [4], sizes: [4] }), bytesItem("v")] },
      { items: [tensorItem("s", [8], { offsets: [0], sizes: [4] })] },
    ];
    const { plans: out, metadata } = createGlobalSavePlan(plans);
    expect(out[0]!.items[0]!.index.index).toBe(0);
    expect(out[1]!.items[0]!.index.index).toBe(1);
    const s = metadata.stateDictMetadata.get("s") as TensorStorageMetadata;
    expect(s.chunks.map((c) => c.offsets[0])).toEqual([4, 0]);
    expect(metadata.stateDictMetadata.get("v")).toEqual({ type: "bytes" });
  });

  it("rejects a plain tensor planned twice", () => {
    expect(() =>
      createGlobalSavePlan([{ items: [tensorItem("t", [2])] }, { items: [tensorItem("t", [2])] }]),
    ).toThrow(expect.objectContaining({ code: "INVALID_PLAN" }));
  });
});

function mdWith(chunks: ChunkStorageMetadata[], size: number[]): Metadata {
  return {
    version: "1.0.0",
    stateDictMetadata: new Map([["t", { type: "tensor", properties: { dtype: "float32" }, size, chunks }]]),
    plannerData: new Map(),
    storageData: new Map(),
    storageMeta: {},
  };
}

describe("global plan validation (DCP's _validate_global_plan)", () => {
  it("accepts chunks that tile the tensor", () => {
    expect(
      validateGlobalPlan(
        2,
        mdWith(
          [
            { offsets: [0, 0], sizes: [2, 4] },
            { offsets: [2, 0], sizes: [2, 4] },
          ],
          [4, 4],
        ),
      ),
    ).toEqual([]);
  });

  it("reports a chunk out of bounds", () => {
    const problems = validateGlobalPlan(1, mdWith([{ offsets: [3], sizes: [2] }], [4]));
    expect(problems.join()).toMatch(/out of bounds/);
  });

  it("reports overlapping chunks", () => {
    const problems = validateGlobalPlan(
      2,
      mdWith(
        [
          { offsets: [0], sizes: [3] },
          { offsets: [2], sizes: [2] },
        ],
        [4],
      ),
    );
    expect(problems.join()).toMatch(/overlap/);
  });

  it("reports missing coverage with more than one plan, and not with one", () => {
    const md = mdWith([{ offsets: [0], sizes: [2] }], [4]);
    expect(validateGlobalPlan(2, md).join()).toMatch(/cover 2 of 4/);
    expect(validateGlobalPlan(1, md)).toEqual([]);
  });

  it("skips 0-d tensors", () => {
    expect(validateGlobalPlan(2, mdWith([{ offsets: [], sizes: [] }], []))).toEqual([]);
  });
});

describe("local save plan", () => {
  it("plans a tensor item at zero offsets, one shard item per chunk and a bytes item per value", () => {
    const items = createWriteItems(
      new Map<string, unknown>([
        ["w", { dtype: "float32", shape: [2, 2], data: new Float32Array(4) }],
        [
          "s",
          {
            dtype: "int8",
            shape: [6],
            shards: [{ offsets: [3], tensor: { dtype: "int8", shape: [3], data: new Int8Array(3) } }],
          },
        ],
        ["step", 3],
      ]),
    );
    expect(items.map((i) => [i.type, i.index.fqn, i.index.offset])).toEqual([
      ["tensor", "w", [0, 0]],
      ["shard", "s", [3]],
      ["bytes", "step", null],
    ]);
    expect(items[1]!.tensorData).toEqual({
      chunk: { offsets: [3], sizes: [3] },
      properties: { dtype: "int8" },
      size: [6],
    });
  });

  it("rejects a tensor whose data length does not match its shape", () => {
    expect(() =>
      createWriteItems(new Map([["w", { dtype: "float32", shape: [3], data: new Float32Array(2) }]])),
    ).toThrow(/Expected "w" \(float32\[3\]\) to hold 12 bytes, got 8/);
  });
});
