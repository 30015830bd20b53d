import { emptyTensor } from "@dcpjs/core";
import { flattenStateDict, unflattenStateDict } from "@dcpjs/core/extend";
import { getElement, setElement } from "@dcpjs/core/testing";
import { describe, expect, it } from "vitest";

const t = () => emptyTensor("float32", [2]);

describe("flattenStateDict (DCP's traversal rules)", () => {
  it("always descends objects and joins the path with dots", () => {
    const { flat, mappings } = flattenStateDict({ model: { layer: { w: t(), b: 1 } }, step: 3 });
    expect([...flat.keys()]).toEqual(["model.layer.w", "model.layer.b", "step"]);
    expect(mappings.get("model.layer.w")).toEqual(["model", "layer", "w"]);
  });

  it("keeps a list without tensors or objects as one leaf", () => {
    const { flat } = flattenStateDict({ betas: [0.9, 0.999], nested: [[1, 2], ["a"]], empty: [] });
    expect([...flat]).toEqual([
      ["betas", [0.9, 0.999]],
      ["nested", [[1, 2], ["a"]]],
      ["empty", []],
    ]);
  });

  it("descends a list that holds a tensor, an object, or such a list", () => {
    const { flat, mappings } = flattenStateDict({ a: [t(), 5], b: [{ x: 1 }], c: [[t()]] });
    expect([...flat.keys()]).toEqual(["a.0", "a.1", "b.0.x", "c.0.0"]);
    expect(mappings.get("c.0.0")).toEqual(["c", 0, 0]);
  });

  it("yields nothing for an empty object", () => {
    expect([...flattenStateDict({ a: {}, b: { c: {} } }).flat.keys()]).toEqual([]);
  });

  it("rejects two paths that flatten to the same key", () => {
    expect(() => flattenStateDict({ "a.b": 1, a: { b: 2 } })).toThrow(
      /Expected unique flattened keys, but "a.b"/,
    );
  });

  it("rejects a __proto__ key (as JSON.parse creates)", () => {
    expect(() => flattenStateDict(JSON.parse('{"x": {"__proto__": {"polluted": 1}}}'))).toThrow(
      expect.objectContaining({ code: "INVALID_STATE_DICT" }),
    );
  });

  it("round-trips through unflattenStateDict", () => {
    const sd = { m: { layers: [{ w: t() }, { w: t() }] }, opt: { lr: 0.1, betas: [1, 2] } };
    const { flat, mappings } = flattenStateDict(sd);
    expect(unflattenStateDict(flat, mappings)).toEqual(sd);
  });
});

describe("setElement / getElement", () => {
  it("creates objects for keys and arrays for indices, padding arrays", () => {
    const root = {};
    setElement(root, ["a", 2, "b"], 7);
    expect(root).toEqual({ a: [null, null, { b: 7 }] });
    expect(getElement(root, ["a", 2, "b"])).toBe(7);
    expect(getElement(root, ["a", 5, "b"])).toBeUndefined();
  });

  it("refuses a __proto__ step", () => {
    expect(() => setElement({}, ["__proto__", "polluted"], 1)).toThrow(
      expect.objectContaining({ code: "INVALID_STATE_DICT" }),
    );
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});
