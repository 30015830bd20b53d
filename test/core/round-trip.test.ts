import {
  DTYPES,
  emptyTensor,
  isTensor,
  load,
  loadStateDictFromKeys,
  type StateDict,
  save,
  type Tensor,
  tensor,
} from "@dcpjs/core";
import { describe, expect, it } from "vitest";
import { randomTensor, sameTensor } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

describe("single-rank round trip on the local file system", () => {
  it.each(DTYPES)("round-trips a %s tensor bit for bit", async (dtype) => {
    const dir = await tempDir();
    const src = randomTensor(dtype, [3, 5, 7], 7);
    await save({ w: src }, { checkpointId: dir });
    const dst = { w: emptyTensor(dtype, [3, 5, 7]) };
    await load(dst, { checkpointId: dir });
    expect(sameTensor(dst.w, src)).toBe(true);
  });

  it("round-trips 0-d and empty tensors", async () => {
    const dir = await tempDir();
    const scalar = tensor("float64", [], new Float64Array([Math.PI]));
    const empty = emptyTensor("int32", [0, 4]);
    await save({ scalar, empty }, { checkpointId: dir });
    const dst = { scalar: emptyTensor("float64", []), empty: emptyTensor("int32", [0, 4]) };
    await load(dst, { checkpointId: dir });
    expect(dst.scalar.data[0]).toBe(Math.PI);
    expect(dst.empty.data.length).toBe(0);
  });

  it("keeps NaN, ±Inf, -0 and int64 extremes exactly", async () => {
    const dir = await tempDir();
    const f = tensor("float32", [5], new Float32Array([Number.NaN, Infinity, -Infinity, -0, 3.5]));
    const i = tensor("int64", [3], new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n, 0n]));
    await save({ f, i }, { checkpointId: dir });
    const dst = { f: emptyTensor("float32", [5]), i: emptyTensor("int64", [3]) };
    await load(dst, { checkpointId: dir });
    expect(sameTensor(dst.f, f)).toBe(true);
    expect(Object.is(dst.f.data[3], -0)).toBe(true);
    expect([...dst.i.data]).toEqual([-(2n ** 63n), 2n ** 63n - 1n, 0n]);
  });

  it("round-trips non-tensor values and replaces them in place", async () => {
    const dir = await tempDir();
    const values = {
      step: 1234,
      lr: 3e-4,
      name: "run-7",
      flags: [true, false, null],
      big: 2n ** 60n,
      blob: new Uint8Array([1, 2, 3]),
      config: { layers: 12, act: "gelu" },
      nested: { deep: { list: [1, [2, 3], "x"] } },
    };
    await save({ ...values, w: randomTensor("float32", [4]) }, { checkpointId: dir });
    const dst: StateDict = {
      step: 0,
      lr: 0,
      name: "",
      flags: [],
      big: 0n,
      blob: new Uint8Array(),
      config: { layers: 0, act: "" },
      nested: { deep: { list: [] } },
      w: emptyTensor("float32", [4]),
    };
    await load(dst, { checkpointId: dir });
    const { w: _, ...loaded } = dst;
    expect(loaded).toEqual(values);
  });

  it("reads a whole checkpoint into a fresh state dict built from its metadata", async () => {
    const dir = await tempDir();
    const sd = {
      model: { layers: [{ w: randomTensor("bfloat16", [2, 3]) }, { w: randomTensor("int8", [4]) }] },
      optim: { step: 9, betas: [0.9, 0.999] },
    };
    await save(sd, { checkpointId: dir });
    const fresh = await loadStateDictFromKeys({ checkpointId: dir });
    const layers = (fresh.model as { layers: { w: Tensor }[] }).layers;
    expect(sameTensor(layers[0]!.w, sd.model.layers[0]!.w)).toBe(true);
    expect(sameTensor(layers[1]!.w, sd.model.layers[1]!.w)).toBe(true);
    expect(fresh.optim).toEqual({ step: 9, betas: [0.9, 0.999] });

    const onlyModel = await loadStateDictFromKeys({ checkpointId: dir, keys: ["model"] });
    expect(Object.keys(onlyModel)).toEqual(["model"]);
    expect(isTensor((onlyModel.model as { layers: { w: unknown }[] }).layers[1]!.w)).toBe(true);
  });
});
