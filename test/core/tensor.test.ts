import { chunkRange, emptyTensor, shardTensor, sliceTensor, tensor, tensorBytes } from "@dcpjs/core";
import { copyBox } from "@dcpjs/core/testing";
import { describe, expect, it } from "vitest";
import { arange } from "../support/tensors.js";

describe("chunkRange / shardTensor (torch.chunk's split)", () => {
  it("splits like torch.chunk, leaving trailing ranks empty", () => {
    expect([0, 1, 2, 3].map((r) => chunkRange(10, r, 4).size)).toEqual([3, 3, 3, 1]);
    expect([0, 1, 2, 3].map((r) => chunkRange(5, r, 4).size)).toEqual([2, 2, 1, 0]);
    expect([0, 1, 2, 3].map((r) => chunkRange(2, r, 4))).toEqual([
      { start: 0, size: 1 },
      { start: 1, size: 1 },
      { start: 2, size: 0 },
      { start: 2, size: 0 },
    ]);
  });

  it("takes a rank's rows or columns", () => {
    const full = arange([4, 3]);
    const cols = shardTensor(full, { dim: 1, rank: 1, worldSize: 3 });
    expect(cols.shape).toEqual([4, 3]);
    expect(cols.shards[0]!.offsets).toEqual([0, 1]);
    expect([...(cols.shards[0]!.tensor.data as Float32Array)]).toEqual([1, 4, 7, 10]);
    expect(shardTensor(full, { rank: 4, worldSize: 5 }).shards).toEqual([]);
  });

  it("rejects a dim outside the tensor and a rank outside the world", () => {
    expect(() => shardTensor(arange([2]), { dim: 1, rank: 0, worldSize: 1 })).toThrow(
      /Expected `dim \(shape \[2\]\)` to be an integer between 0 and 0, got 1/,
    );
    expect(() => shardTensor(arange([2]), { rank: 2, worldSize: 2 })).toThrow(
      /Expected `rank` to be an integer between 0 and 1, got 2/,
    );
  });
});

describe("copyBox", () => {
  it("copies an inner 2-D box between differently shaped buffers", () => {
    const src = arange([4, 5]);
    const dst = emptyTensor("float32", [3, 3]);
    copyBox(tensorBytes(src), [4, 5], [1, 2], tensorBytes(dst), [3, 3], [1, 0], [2, 3], 4);
    expect([...dst.data]).toEqual([0, 0, 0, 7, 8, 9, 12, 13, 14]);
  });

  it("copies a 0-d element and ignores an empty box", () => {
    const dst = emptyTensor("int32", []);
    copyBox(tensorBytes(tensor("int32", [], new Int32Array([42]))), [], [], tensorBytes(dst), [], [], [], 4);
    expect(dst.data[0]).toBe(42);
    copyBox(new Uint8Array(0), [0], [0], new Uint8Array(0), [0], [0], [0], 4);
  });

  it("slices a box out of a 3-D tensor", () => {
    const t = arange([2, 3, 4]);
    expect([...(sliceTensor(t, [1, 1, 2], [1, 2, 2]).data as Float32Array)]).toEqual([18, 19, 22, 23]);
  });
});

describe("shardTensor memory", () => {
  it("views the full tensor's memory for a dim-0 piece and copies a column piece", () => {
    const full = arange([4, 3]);
    const rows = shardTensor(full, { dim: 0, rank: 1, worldSize: 2 }).shards[0]!.tensor;
    expect(rows.data).toBeInstanceOf(Float32Array);
    expect(rows.data.buffer).toBe(full.data.buffer);
    expect([...(rows.data as Float32Array)]).toEqual([6, 7, 8, 9, 10, 11]);
    const cols = shardTensor(full, { dim: 1, rank: 0, worldSize: 2 }).shards[0]!.tensor;
    expect(cols.data.buffer).not.toBe(full.data.buffer);
    const bytes = tensor("float32", [2, 2], Buffer.alloc(16, 1));
    expect(shardTensor(bytes, { rank: 1, worldSize: 2 }).shards[0]!.tensor.data.constructor).toBe(Uint8Array);
  });
});
