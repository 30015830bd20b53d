import { emptyTensor, type Tensor } from "@dcpjs/core";
import { describe, expect, it } from "vitest";
import { tensorBytes } from "../../packages/core/src/model/tensor.js";
import type { ReadItem, StorageInfo } from "../../packages/core/src/plan/metadata.js";
import type { LoadPlanner } from "../../packages/core/src/plan/planner.js";
import { deliverPayload, directTarget } from "../../packages/core/src/storage/read-delivery.js";
import { type ItemRead, partOf, wholeRead } from "../../packages/core/src/storage/read-locate.js";

/** A saved float32 chunk [4, 8] of a tensor "w" of that shape. */
const saved = { chunk: { offsets: [0, 0], sizes: [4, 8] }, dtype: "float32" as const };
const info = (itemFormat?: string): StorageInfo => ({
  relativePath: "f",
  offset: 0,
  length: 4 * 8 * 4,
  crc32: 0,
  ...(itemFormat ? { itemFormat } : {}),
});
const box = (storageOffsets: number[], lengths: number[], destOffsets = [0, 0]): ReadItem => ({
  type: "tensor",
  destIndex: { fqn: "w", offset: [0, 0] },
  destOffsets,
  storageIndex: { fqn: "w", offset: [0, 0] },
  storageOffsets,
  lengths,
});
const read = (item: ReadItem, itemFormat?: string): ItemRead => wholeRead(item, info(itemFormat), "w", saved);

/** A planner whose destination is `target`, recording what it was handed. */
function planner(target: Tensor) {
  const committed: ReadItem[] = [];
  const values: Uint8Array[] = [];
  const p = {
    resolveTensor: () => target,
    commitTensor: (item: ReadItem) => committed.push(item),
    loadBytes: (_: ReadItem, bytes: Uint8Array) => values.push(bytes),
  } as unknown as LoadPlanner;
  return { p, committed, values };
}

/** The chunk's payload: element i is i. */
const payload = () => new Uint8Array(Float32Array.from({ length: 32 }, (_, i) => i).buffer);

describe("delivery: verified payloads into their destinations", () => {
  it("a whole chunk of the saved dtype in a contiguous run of its destination lands in place", () => {
    const target = emptyTensor("float32", [4, 8]);
    const { p } = planner(target);
    const at = directTarget([read(box([0, 0], [4, 8]))], p);
    expect(at?.dest).toBe(target);
    expect(at?.bytes.byteLength).toBe(128);
    expect(at?.framed).toBeUndefined();
    // A box of the chunk, another dtype, or several readers: staged and copied.
    expect(directTarget([read(box([1, 0], [2, 8]))], p)).toBeUndefined();
    expect(
      directTarget([read(box([0, 0], [4, 8]))], planner(emptyTensor("bfloat16", [4, 8])).p),
    ).toBeUndefined();
    expect(directTarget([read(box([0, 0], [4, 8])), read(box([0, 0], [4, 8]))], p)).toBeUndefined();
  });

  it("copies a box out of the chunk — from a partial read too — and commits it", () => {
    const target = emptyTensor("float32", [2, 4]);
    const { p, committed } = planner(target);
    const item = box([1, 2], [2, 4]);
    expect(deliverPayload([read(item)], payload(), undefined, p, Number.POSITIVE_INFINITY)).toBeUndefined();
    expect([...(target.data as Float32Array)]).toEqual([10, 11, 12, 13, 18, 19, 20, 21]);
    expect(committed).toEqual([item]);
    // The bytes of rows 1..2 alone (a part starting at byte 32).
    const part = { ...read(item), start: 32 };
    const again = emptyTensor("float32", [2, 4]);
    deliverPayload([part], payload().subarray(32, 96), undefined, planner(again).p, Number.POSITIVE_INFINITY);
    expect([...(again.data as Float32Array)]).toEqual([10, 11, 12, 13, 18, 19, 20, 21]);
  });

  it("casts into a destination of another dtype, and hands values over as their bytes", () => {
    const target = emptyTensor("float64", [4, 8]);
    deliverPayload(
      [read(box([0, 0], [4, 8]))],
      payload(),
      undefined,
      planner(target).p,
      Number.POSITIVE_INFINITY,
    );
    expect((target.data as Float64Array)[31]).toBe(31);
    const { p, values } = planner(target);
    const value: ItemRead = {
      ...read(box([0, 0], [1, 1])),
      item: {
        type: "bytes",
        destIndex: { fqn: "s", offset: null },
        storageIndex: { fqn: "s", offset: null },
      },
    };
    const bytes = new Uint8Array([1, 2, 3]);
    deliverPayload([value], bytes, undefined, p, 0);
    expect(values).toEqual([bytes]);
  });

  it("a read in place is only committed", () => {
    const target = emptyTensor("float32", [4, 8]);
    const { p, committed } = planner(target);
    tensorBytes(target).set(payload());
    deliverPayload([read(box([0, 0], [4, 8]))], tensorBytes(target), target, p, 0);
    expect(committed).toHaveLength(1);
    expect(partOf(read(box([0, 0], [4, 8])))).toBeUndefined(); // no blocks: read whole
  });
});
