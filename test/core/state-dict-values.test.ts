import {
  asyncSave,
  CheckpointException,
  emptyTensor,
  isShardedTensor,
  isTensor,
  load,
  loadStateDictFromKeys,
  type StateDict,
  save,
  type Tensor,
  tensor,
  tensorBytes,
} from "@dcpjs/core";
import { flattenStateDict } from "@dcpjs/core/extend";
import { getElement } from "@dcpjs/core/testing";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { randomTensor } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

/** What a save rejected with: a CheckpointException (fails the test when it saved). */
async function refusal(p: Promise<unknown>): Promise<CheckpointException> {
  const e = await p.then(
    () => expect.unreachable("expected the save to be refused"),
    (error: unknown) => error,
  );
  expect(e).toBeInstanceOf(CheckpointException);
  return e as CheckpointException;
}

class Point {
  constructor(
    readonly x: number,
    readonly y: number,
  ) {}
}

/** A state dict TypeScript would refuse: the runtime check is what these tests exercise. */
const untyped = (sd: Record<string, unknown>) => sd as StateDict;

describe("a value that would not come back as itself is refused, naming the fqn and what to use", () => {
  it.each<[string, unknown, RegExp]>([
    ["a bare Float32Array", new Float32Array(3), /bare Float32Array.*use tensor\("float32", \[3\], data\)/],
    ["a bare Int32Array", new Int32Array(2), /use tensor\("int32", \[2\], data\)/],
    ["a Buffer", Buffer.from([1, 2]), /a Buffer, which would come back as a plain Uint8Array/],
    ["a DataView", new DataView(new ArrayBuffer(4)), /a DataView/],
    ["an ArrayBuffer", new ArrayBuffer(4), /an ArrayBuffer: wrap it as new Uint8Array/],
    ["a Map", new Map([["a", 1]]), /a Map, which would come back as a plain object: use a plain object/],
    ["a Set", new Set([1]), /a Set.*use an array/],
    ["a class instance", new Point(1, 2), /an instance of class Point.*use a plain object of its fields/],
    ["a function", () => 0, /a function: a state dict holds data only/],
    ["a symbol", Symbol("s"), /a symbol/],
    ["an invalid Date", new Date(Number.NaN), /an invalid Date/],
    ["a bigint wider than 64 bits", 2n ** 70n, /outside int64\/uint64/],
  ])("%s", async (_what, value, hint) => {
    const dir = await tempDir();
    const e = await refusal(save(untyped({ model: { w: value } }), { checkpointId: dir }));
    expect(e.code).toBe("INVALID_STATE_DICT");
    expect(e.step).toBe("plan");
    expect(e.failures[0]!.message).toMatch(/^Expected "model\.w" to be a tensor or a value that round-trips/);
    expect(e.failures[0]!.message).toMatch(hint);
  });

  it("inside a list stored whole, naming the position", async () => {
    const dir = await tempDir();
    const e = await refusal(save(untyped({ xs: [1, [2, new Float64Array(1)]] }), { checkpointId: dir }));
    expect(e.failures[0]!.message).toMatch(
      /^Expected "xs" \(at \[1\]\[1\]\) to be .* got a bare Float64Array/,
    );
  });

  it("as a load target too", async () => {
    const dir = await tempDir();
    await save({ w: tensor("float32", [3]) }, { checkpointId: dir });
    const e = await refusal(load(untyped({ w: new Float32Array(3) }), { checkpointId: dir }));
    expect(e.code).toBe("INVALID_STATE_DICT");
    expect(e.failures[0]!.message).toMatch(/"w".*use tensor\("float32", \[3\], data\)/);
  });

  it("by asyncSave in the plan step (not by staging's structuredClone)", async () => {
    const dir = await tempDir();
    const { staged, completed } = asyncSave(untyped({ f: () => 1, m: new Map() }), { checkpointId: dir });
    await staged;
    const e = await refusal(completed);
    expect(e.code).toBe("INVALID_STATE_DICT");
    expect(e.step).toBe("plan");
  });
});

describe("an empty object inside a list is refused at save (it would save nothing; the list could not be rebuilt)", () => {
  it.each<[string, Record<string, unknown>, string, RegExp]>([
    ["{ _: [{}, 0] }", { _: [{}, 0] }, "_.0", /got an empty object/],
    [
      "an object of empty objects",
      { m: { xs: [tensor("float32", [1]), { a: {}, b: {} }] } },
      "m.xs.1",
      /only empty objects/,
    ],
    ["a trailing one", { xs: [0, {}] }, "xs.1", /got an empty object/],
    ["in a nested list", { xs: [[{}], 0] }, "xs.0.0", /got an empty object/],
  ])("%s", async (_what, sd, fqn, what) => {
    const dir = await tempDir();
    const e = await refusal(save(untyped(sd), { checkpointId: dir }));
    expect(e.code).toBe("INVALID_STATE_DICT");
    expect(e.step).toBe("plan");
    const message = e.failures[0]!.message;
    expect(message).toContain(`Expected "${fqn}", an element of a list, to hold a tensor or a value`);
    expect(message).toMatch(what);
    expect(message).toMatch(/remove it from the list, or put null or a value in its place/);
  });

  it("with null in its place the list saves and loads back", async () => {
    const dir = await tempDir();
    await save({ _: [null, 0, { a: 1 }] }, { checkpointId: dir });
    expect(await loadStateDictFromKeys({ checkpointId: dir })).toStrictEqual({ _: [null, 0, { a: 1 }] });
  });

  it("a load target may still hold one (only a save must rebuild the list)", async () => {
    const dir = await tempDir();
    await save({ xs: [1, { a: 2 }] }, { checkpointId: dir });
    const target = { xs: [null, { a: 0 }, {}] };
    await load(untyped(target), { checkpointId: dir });
    expect(target).toStrictEqual({ xs: [1, { a: 2 }, {}] });
  });
});

describe("the documented value types round-trip as themselves", () => {
  it("Uint8Array, Date, bigints to the int64/uint64 ends, -0, NaN, infinities; undefined as null", async () => {
    const dir = await tempDir();
    const sd = {
      bytes: new Uint8Array([1, 2, 3]),
      when: new Date(Date.UTC(2026, 11, 7)),
      big: [-(2n ** 63n), 2n ** 64n - 1n, 0n],
      floats: [-0, Number.NaN, Number.POSITIVE_INFINITY, 0.1, 7, 5n],
      negZero: -0,
      nothing: undefined,
    };
    await save(sd, { checkpointId: dir });
    const got = await loadStateDictFromKeys({ checkpointId: dir });
    expect(got).toStrictEqual({ ...sd, nothing: null });
    expect(Object.is(got.negZero, -0)).toBe(true);
    expect(Object.is((got.floats as number[])[0], -0)).toBe(true);
  });
});

// ---- the property: a generated state dict comes back leaf for leaf, or is refused ----

/** Values the generator made that must be refused; identity (or bigint value) marks them. */
const forbidden = new Set<unknown>();
const mark = <T>(v: T): T => {
  forbidden.add(v);
  return v;
};

const value: fc.Arbitrary<unknown> = fc.oneof(
  fc.double(),
  fc.integer(),
  fc.maxSafeInteger(),
  fc.string({ unit: "binary", maxLength: 8 }),
  fc.boolean(),
  fc.constant(null),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }),
  fc.uint8Array({ maxLength: 8 }),
  fc.date({ noInvalidDate: true }),
);

const bad: fc.Arbitrary<unknown> = fc.oneof(
  fc.nat(4).map((n) => mark(new Float32Array(n))),
  fc.nat(4).map((n) => mark(new Int16Array(n))),
  fc.nat(4).map((n) => mark(new DataView(new ArrayBuffer(n)))),
  fc.constant(null).map(() => mark(new Map([[1, 2]]))),
  fc.constant(null).map(() => mark(new Set())),
  fc.integer().map((x) => mark(new Point(x, x))),
  fc.constant(null).map(() => mark(() => 0)),
  fc.string().map((s) => mark(Symbol(s))),
  fc.bigInt({ min: 2n ** 64n, max: 2n ** 80n }).map(mark),
  fc.constant(null).map(() => mark(new Date(Number.NaN))),
  fc.uint8Array({ maxLength: 4 }).map((b) => mark(Buffer.from(b))),
);

const DTYPES = ["float32", "float64", "int64", "int32", "uint8", "bfloat16"] as const;
const tensorArb: fc.Arbitrary<Tensor> = fc
  .record({ dtype: fc.constantFrom(...DTYPES), shape: fc.array(fc.nat(3), { maxLength: 3 }), seed: fc.nat() })
  .map(({ dtype, shape, seed }) => randomTensor(dtype, shape, seed + 1));

const key = fc.stringMatching(/^[a-z_][a-z0-9_]{0,4}$/);

/** A leaf value, forbidden about one time in twelve. */
const leaf = fc.oneof({ weight: 11, arbitrary: value }, { weight: 1, arbitrary: bad });

// Objects may be empty: one inside a descended list saves nothing, so the save is refused (the
// list could not be rebuilt); anywhere else it saves nothing and the target keeps it.
const { node } = fc.letrec<{ node: unknown }>((tie) => ({
  node: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    leaf,
    tensorArb,
    fc.array(fc.oneof(leaf, fc.array(leaf, { maxLength: 3 })), { maxLength: 4 }),
    fc.dictionary(key, tie("node"), { minKeys: 0, maxKeys: 4, noNullPrototype: true }),
    fc.array(tie("node"), { maxLength: 3 }),
  ),
}));
const stateDictArb = fc.dictionary(key, node, { minKeys: 1, maxKeys: 5, noNullPrototype: true });

function isPlain(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && Object.getPrototypeOf(v) === Object.prototype && !isTensor(v);
}
/** DCP's rule: a list is stored whole unless it holds a tensor, an object or such a list. */
function isTerminal(list: readonly unknown[]): boolean {
  return list.every((v) => !isTensor(v) && !isPlain(v) && (!Array.isArray(v) || isTerminal(v)));
}
/** Whether `v` yields no entry when flattened: an empty object, or an object of such. */
function yieldsNothing(v: unknown): boolean {
  return isPlain(v) && Object.values(v).every(yieldsNothing);
}
/** Whether a descended list (at any depth) holds an element that yields no entry. */
function holdsEmptyInList(v: unknown): boolean {
  if (isTensor(v)) return false;
  if (Array.isArray(v)) return !isTerminal(v) && v.some((x) => yieldsNothing(x) || holdsEmptyInList(x));
  return isPlain(v) && Object.values(v).some(holdsEmptyInList);
}
function holdsForbidden(v: unknown): boolean {
  if (forbidden.has(v)) return true;
  if (isTensor(v)) return false;
  if (Array.isArray(v)) return v.some(holdsForbidden);
  return isPlain(v) && Object.values(v).some(holdsForbidden);
}
/** The load target: the same nesting, tensors empty, values (and lists stored whole) null. */
function targetOf(v: unknown): unknown {
  if (isTensor(v)) return emptyTensor(v.dtype, v.shape);
  if (Array.isArray(v)) return isTerminal(v) ? null : v.map(targetOf);
  if (isPlain(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, targetOf(x)]));
  return null;
}

describe("a generated state dict comes back leaf for leaf with its type, or the save is refused", () => {
  it("holds for tensors, nested objects and lists, numbers, strings, booleans, null, bigint, bytes, dates and the forbidden kinds", async () => {
    const dir = await tempDir();
    let saved = 0;
    let refused = 0;
    await fc.assert(
      fc.asyncProperty(stateDictArb, async (sd) => {
        const result = await save(sd as StateDict, { checkpointId: dir }).then(
          () => undefined,
          (error: unknown) => error,
        );
        if (holdsForbidden(sd) || holdsEmptyInList(sd)) {
          refused++;
          expect(result).toBeInstanceOf(CheckpointException);
          expect((result as CheckpointException).code).toBe("INVALID_STATE_DICT");
          expect((result as CheckpointException).failures[0]!.message).toMatch(
            /^Expected "[^"]+"(( \(at [^)]+\))? to be a tensor|, an element of a list, to hold a tensor or a value)/,
          );
          return;
        }
        expect(result).toBeUndefined();
        saved++;
        const target = targetOf(sd) as StateDict;
        await load(target, { checkpointId: dir });
        for (const [fqn, original] of flattenStateDict(sd as StateDict).flat) {
          const path = flattenStateDict(sd as StateDict).mappings.get(fqn)!;
          const got = getElement(target, path);
          if (isTensor(original)) {
            expect(isTensor(got) && !isShardedTensor(got)).toBe(true);
            const t = got as Tensor;
            expect([t.dtype, t.shape]).toEqual([original.dtype, original.shape]);
            expect(tensorBytes(t)).toEqual(tensorBytes(original));
          } else {
            expect(typeof got).toBe(typeof original);
            if (typeof original === "object" && original !== null)
              expect(Object.getPrototypeOf(got)).toBe(Object.getPrototypeOf(original));
            expect(got).toStrictEqual(original);
          }
        }
      }),
      { seed: 23, numRuns: 150 },
    );
    // Both outcomes were exercised.
    expect(saved).toBeGreaterThan(20);
    expect(refused).toBeGreaterThan(5);
  });
});
