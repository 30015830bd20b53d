// Type-level tests: `expectTypeOf` is checked by `tsc -p test` (pnpm typecheck); at run time it
// does nothing, so each type claim here has a run-time twin where one can be made.
import {
  emptyTensor,
  isTensor,
  type Loaded,
  load,
  loadStateDictFromKeys,
  type ShardedTensor,
  type StateDict,
  save,
  shardTensor,
  type Tensor,
  tensor,
} from "@dcpjs/core";
import type { loadTrainingState, RestoredState } from "@dcpjs/tfjs";
import { describe, expect, expectTypeOf, it } from "vitest";
import { tempDir } from "../support/tmp.js";

describe("load keeps the state dict's type", () => {
  it("resolves to the very object it filled, typed as given", async () => {
    const dir = await tempDir();
    await save(
      { model: { w: tensor("float32", [2], new Float32Array([1, 2])) }, step: 7 },
      { checkpointId: dir },
    );
    const target = { model: { w: emptyTensor("float32", [2]) }, step: 0 };
    const loaded = load(target, { checkpointId: dir });
    expectTypeOf(loaded).resolves.toEqualTypeOf<typeof target>();
    expectTypeOf(loaded).resolves.toExtend<{ model: { w: Tensor }; step: number }>();
    const got = await loaded;
    expect(got).toBe(target);
    expectTypeOf(got.step).toEqualTypeOf<number>();
    expect(got.step).toBe(7);
  });
});

describe("loadStateDictFromKeys takes the expected shape as a type parameter", () => {
  type Saved = { model: { w: ShardedTensor; b: Tensor }; step: number; tags: readonly string[] };

  it("gives Tensor to the tensors (sharded ones whole) and keeps the values' types", async () => {
    const dir = await tempDir();
    const w = tensor("float32", [4], new Float32Array([1, 2, 3, 4]));
    const saved: Saved = {
      model: { w: shardTensor(w, { rank: 0, worldSize: 1 }), b: tensor("int32", [1]) },
      step: 3,
      tags: ["a"],
    };
    await save(saved, { checkpointId: dir });
    const sd = await loadStateDictFromKeys<Saved>({ checkpointId: dir });
    expectTypeOf(sd).toEqualTypeOf<{ model: { w: Tensor; b: Tensor }; step: number; tags: string[] }>();
    expectTypeOf(sd.model.w.shape).toEqualTypeOf<readonly number[]>();
    expect(sd.model.w.shape).toEqual([4]);
    expect(sd.step + 1).toBe(4);
  });

  it("by default, every leaf is a Tensor or a value — never any; isTensor narrows", async () => {
    const dir = await tempDir();
    await save({ w: tensor("float32", [1]), step: 1 }, { checkpointId: dir });
    const sd = await loadStateDictFromKeys({ checkpointId: dir });
    expectTypeOf(sd).toEqualTypeOf<Loaded<StateDict>>();
    const leaf = sd.w;
    expectTypeOf(leaf).not.toBeAny();
    expectTypeOf(leaf).not.toBeUnknown();
    expectTypeOf<Tensor>().toExtend<NonNullable<typeof leaf>>();
    expectTypeOf<number>().toExtend<NonNullable<typeof leaf>>();
    if (!isTensor(leaf)) throw new Error("expected a tensor");
    expectTypeOf(leaf).toEqualTypeOf<Tensor>();
    expect(leaf.dtype).toBe("float32");
  });
});

describe("loadTrainingState takes the type of the saved extra", () => {
  it("gives extra that type, so extra.step needs no cast; StateDict | undefined by default", () => {
    type Typed = Awaited<ReturnType<typeof loadTrainingState<{ step: number; seed: bigint }>>>;
    expectTypeOf<Typed["extra"]["step"]>().toEqualTypeOf<number>();
    expectTypeOf<Typed["extra"]["seed"]>().toEqualTypeOf<bigint>();
    type Default = Awaited<ReturnType<typeof loadTrainingState>>;
    expectTypeOf<Default>().toEqualTypeOf<RestoredState>();
    expectTypeOf<Default["extra"]>().toEqualTypeOf<Loaded<StateDict> | undefined>();
  });
});

describe("the StateDict type refuses what save refuses, where TypeScript can tell", () => {
  it("accepts tensors, sharded tensors, values, dates, bytes, nested objects and lists", () => {
    expectTypeOf<{
      w: Tensor;
      s: ShardedTensor;
      step: number;
      name: string;
      on: boolean;
      none: null;
      big: bigint;
      bytes: Uint8Array;
      when: Date;
      xs: number[][];
      layers: { w: Tensor }[];
      nested: { deep: { lr: number; maybe?: string } };
    }>().toExtend<StateDict>();
  });

  it("refuses a bare typed array, a DataView, a Map, a Set, a class instance, a function, a symbol", () => {
    class Point {
      constructor(readonly x: number) {}
    }
    expectTypeOf<{ w: Float32Array }>().not.toExtend<StateDict>();
    expectTypeOf<{ w: Int32Array }>().not.toExtend<StateDict>();
    expectTypeOf<{ w: DataView }>().not.toExtend<StateDict>();
    expectTypeOf<{ m: Map<string, number> }>().not.toExtend<StateDict>();
    expectTypeOf<{ s: Set<number> }>().not.toExtend<StateDict>();
    expectTypeOf<{ p: Point }>().not.toExtend<StateDict>();
    expectTypeOf<{ f: () => number }>().not.toExtend<StateDict>();
    expectTypeOf<{ y: symbol }>().not.toExtend<StateDict>();
    expectTypeOf<{ nested: { xs: Float64Array[] } }>().not.toExtend<StateDict>();
  });
});
