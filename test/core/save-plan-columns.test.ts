import { DefaultSavePlanner, type ShardedTensor, type StateDict, shardTensor, tensor } from "@dcpjs/core";
import {
  decodeSavePlan,
  encodeSavePlan,
  type SavePlan,
  SavePlanDecoder,
  savePlanColumns,
} from "@dcpjs/core/extend";
import { describe, expect, it } from "vitest";

/** A small deterministic random source. */
function rng(seed: number): () => number {
  let x = seed * 2654435761 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
}

/** Every rank's state dict of a random world: sharded, replicated, partly held, bytes and 0-d entries. */
function randomWorld(seed: number, ranks: number): StateDict[] {
  const r = rng(seed);
  const sds: StateDict[] = Array.from({ length: ranks }, () => ({}));
  const entries = 5 + Math.floor(r() * 20);
  for (let e = 0; e < entries; e++) {
    const kind = Math.floor(r() * 5);
    const fqn = `layer${e}.w`;
    const rows = 1 + Math.floor(r() * 9);
    const cols = 1 + Math.floor(r() * 3);
    for (let rank = 0; rank < ranks; rank++) {
      const sd = sds[rank]!;
      if (kind === 0) sd[fqn] = shardTensor(tensor("float32", [rows, cols]), { rank, worldSize: ranks });
      else if (kind === 1) sd[fqn] = tensor("int16", [rows, cols]);
      else if (kind === 2 && r() < 0.5) sd[fqn] = tensor("float64", [rows]);
      else if (kind === 3) sd[fqn] = { step: e, name: `v${e}` };
      else if (kind === 4) sd[fqn] = tensor("bfloat16", []);
    }
  }
  return sds;
}

function localPlans(sds: readonly StateDict[]): SavePlan[] {
  return sds.map((sd) => {
    const planner = new DefaultSavePlanner();
    planner.setUpPlanner(sd);
    return planner.createLocalPlan();
  });
}

/** The same plans as plain objects: the planner's original path. */
function plain(plans: readonly SavePlan[]): SavePlan[] {
  return plans.map((p) => ({
    items: structuredClone([...p.items]),
    ...(p.plannerData ? { plannerData: p.plannerData } : {}),
  }));
}

function globalOf(plans: SavePlan[], saveToLowestRank = false) {
  const { plans: out, metadata } = new DefaultSavePlanner({ saveToLowestRank }).createGlobalPlan(plans);
  return { plans: out.map((p) => ({ ...p, items: [...p.items] })), metadata };
}

describe("columnar save plans", () => {
  it("plan globally as the WriteItem objects do: same kept items, index hints and metadata, on random worlds", () => {
    for (let seed = 1; seed <= 40; seed++) {
      const ranks = 1 + (seed % 5);
      const plans = localPlans(randomWorld(seed, ranks));
      expect(plans.every((p) => savePlanColumns(p) !== undefined)).toBe(true);
      for (const lowest of [false, true]) {
        const columnar = globalOf(plans, lowest);
        const objects = globalOf(plain(plans), lowest);
        expect(columnar).toEqual(objects);
      }
    }
  });

  it("fail the global plan with the same errors as WriteItem objects", () => {
    const cases: StateDict[][] = [
      // chunks of one fqn disagree on dtype
      [
        { w: shardTensor(tensor("float32", [4, 2]), { rank: 0, worldSize: 2 }) },
        { w: shardTensor(tensor("float16", [4, 2]), { rank: 1, worldSize: 2 }) },
      ],
      // … on global size
      [
        { w: shardTensor(tensor("float32", [4, 2]), { rank: 0, worldSize: 2 }) },
        { w: { ...shardTensor(tensor("float32", [4, 2]), { rank: 1, worldSize: 2 }), shape: [4, 3] } },
      ],
      // a value in one rank, a shard in another
      [{ w: 3 }, { w: shardTensor(tensor("float32", [4, 2]), { rank: 1, worldSize: 2 }) }],
      // overlapping shards and missing coverage
      [
        { w: shardTensor(tensor("float32", [4, 2]), { rank: 0, worldSize: 2 }) },
        { w: shardTensor(tensor("float32", [4, 2]), { rank: 0, worldSize: 2 }) },
        { w: { ...shardTensor(tensor("float32", [4, 2]), { rank: 1, worldSize: 2 }), shape: [4, 2] } },
      ],
    ];
    cases[3]![1] = {
      w: {
        dtype: "float32",
        shape: [4, 2],
        shards: [{ offsets: [1, 0], tensor: tensor("float32", [2, 2]) }],
      } as ShardedTensor,
    };
    for (const sds of cases) {
      const plans = localPlans(sds);
      const errorOf = (p: SavePlan[]) => {
        try {
          globalOf(p);
          return undefined;
        } catch (error) {
          return [(error as { code: string }).code, (error as Error).message];
        }
      };
      const expected = errorOf(plain(plans));
      expect(expected).toBeDefined();
      expect(errorOf(plans)).toEqual(expected);
    }
  });

  it("encode to one compact binary and decode to the same plan, hints, planner and storage data included", () => {
    const plans = localPlans(randomWorld(7, 3));
    for (const plan of plans)
      expect(decodeSavePlan(encodeSavePlan(plan))).toEqual({ ...plan, items: [...plan.items] });
    const { plans: finished } = new DefaultSavePlanner().createGlobalPlan(plans);
    for (const plan of finished) {
      const withPrefix = { ...plan, storageData: { prefix: "__1_" } };
      const back = decodeSavePlan(encodeSavePlan(withPrefix));
      expect({ ...back, items: [...back.items] }).toEqual({ ...withPrefix, items: [...withPrefix.items] });
    }
    // Bytes at an odd offset of a larger buffer (as a process group's decoder may hand them over).
    const encoded = encodeSavePlan(plans[0]!);
    const odd = Buffer.alloc(encoded.length + 3);
    odd.set(encoded, 3);
    expect([...decodeSavePlan(odd.subarray(3)).items]).toEqual([...plans[0]!.items]);
    // Far offsets (not int32) travel as float64.
    const far: StateDict = {
      w: {
        dtype: "float32",
        shape: [2 ** 33, 1],
        shards: [{ offsets: [2 ** 32 + 3, 0], tensor: tensor("float32", [1, 1]) }],
      },
    };
    const [plan] = localPlans([far]);
    expect([...decodeSavePlan(encodeSavePlan(plan!)).items]).toEqual([...plan!.items]);
  });

  it("takes a few bytes per item on the wire", () => {
    const sd: StateDict = {};
    for (let t = 0; t < 1000; t++)
      sd[`model.layers.${t}.mlp.weight`] = shardTensor(tensor("float32", [64, 4]), {
        rank: 3,
        worldSize: 32,
      });
    const [plan] = localPlans([sd]);
    const bytes = encodeSavePlan(plan!);
    // fqns twice (table and planner data) ≈ 60 B per item; the columns ≈ 21 B.
    expect(bytes.byteLength / 1000).toBeLessThan(100);
  });

  it("share one decoded fqn table among plans of one gather that hold the same fqns", () => {
    const plans = localPlans(randomWorld(3, 4).map(() => ({ a: tensor("float32", [2]), b: 1 })));
    const decoder = new SavePlanDecoder();
    const decoded = plans.map((p) => decoder.decode(encodeSavePlan(p)));
    expect(savePlanColumns(decoded[0]!)!.fqns).toBe(savePlanColumns(decoded[3]!)!.fqns);
    expect(decoded[0]!.plannerData).toBe(decoded[3]!.plannerData);
  });

  it("refuse bytes that are not a plan", () => {
    const [plan] = localPlans([{ a: tensor("float32", [2]) }]);
    const bytes = encodeSavePlan(plan!);
    expect(() => decodeSavePlan(new Uint8Array(8))).toThrow(/Expected an encoded save plan/);
    expect(() => decodeSavePlan(bytes.subarray(0, bytes.length - 8))).toThrow(/header says/);
    const bad = bytes.slice();
    new DataView(bad.buffer).setUint32(0, 0);
    expect(() => decodeSavePlan(bad)).toThrow(/magic/);
  });

  it("give custom planners WriteItem objects: a copy keeps the columns, a write to the items drops them", () => {
    const [plan] = localPlans([
      { a: tensor("float32", [2]), b: shardTensor(tensor("int8", [4]), { rank: 0, worldSize: 2 }) },
    ]);
    expect(Array.isArray(plan!.items)).toBe(true);
    expect(plan!.items.map((i) => [i.type, i.index.fqn, i.index.offset])).toEqual([
      ["tensor", "a", [0]],
      ["shard", "b", [0]],
    ]);
    expect(savePlanColumns({ ...plan!, storageData: { prefix: "x" } })).toBe(savePlanColumns(plan!));
    plan!.items.pop();
    expect(savePlanColumns(plan!)).toBeUndefined();
    expect(() => encodeSavePlan(plan!)).toThrow(/Expected a save plan over columns/);
  });
  it("reach the writer as columns: finishPlan keeps them, resolveDataAt gives each item's bytes as resolveData", () => {
    const sd: StateDict = {
      a: tensor("float32", [2], new Float32Array([1, 2])),
      b: shardTensor(tensor("int8", [4], new Int8Array([1, 2, 3, 4])), { rank: 1, worldSize: 2 }),
      c: { step: 7, name: "x" },
      d: tensor("bfloat16", []),
    };
    const planner = new DefaultSavePlanner();
    planner.setUpPlanner(sd);
    const { plans } = planner.createGlobalPlan([planner.createLocalPlan()]);
    const finished = planner.finishPlan(plans[0]!);
    const columns = savePlanColumns(finished)!;
    expect(columns).toBeDefined();
    const items = [...finished.items];
    expect(items.map((i) => i.type)).toEqual(["tensor", "shard", "bytes", "bytes", "tensor"]);
    items.forEach((item, i) => {
      expect(planner.resolveDataAt(columns, i)).toEqual(planner.resolveData(item));
    });
    expect(planner.resolveDataAt(columns, 1)).toEqual(new Uint8Array([3, 4]));
  });
});
