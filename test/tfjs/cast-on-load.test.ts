import { join } from "node:path";
import {
  type DType,
  isTensor,
  loadStateDictFromKeys,
  type StateDict,
  save,
  type Tensor,
  tensor,
  tensorBytes,
} from "@dcpjs/core";
import { boxCast, castBox } from "@dcpjs/core/extend";
import { buildModel, makeOptimizer, trainingData } from "@dcpjs/demo-kit";
import { type CastTensor, dcpjsIOHandler, loadTrainingState, toStateDict } from "@dcpjs/tfjs";
import * as tf from "@tensorflow/tfjs";
import { beforeAll, describe, expect, it } from "vitest";
import { tempDir } from "../support/tmp.js";

beforeAll(async () => {
  await tf.setBackend("cpu");
});

/** A float32 tensor narrowed to `dtype` (the saved checkpoint's), as torch's `.to(dtype)`. */
function narrow(t: Tensor, dtype: DType): Tensor {
  const out = tensor(dtype, t.shape);
  const zeros = t.shape.map(() => 0);
  const box = boxCast(t.shape, zeros, t.shape, zeros, t.shape);
  if (box) castBox("float32", tensorBytes(t), dtype, tensorBytes(out), box);
  return out;
}

/** The exact float32 value of each element of a bf16/fp16/float8_e4m3fn tensor, decoded from its bits here (independent of core). */
function decode(t: Tensor): number[] {
  const bytes = tensorBytes(t);
  const minifloat = (bits: number, exp: number, man: number) => {
    const sign = bits >> (exp + man) ? -1 : 1;
    const e = (bits >> man) & ((1 << exp) - 1);
    const m = bits & ((1 << man) - 1);
    const bias = (1 << (exp - 1)) - 1;
    return sign * (e === 0 ? m * 2 ** (1 - bias - man) : (1 + m / 2 ** man) * 2 ** (e - bias));
  };
  switch (t.dtype) {
    case "bfloat16":
      return Array.from(
        new Uint16Array(bytes.slice().buffer),
        (b) => new Float32Array(new Uint32Array([b << 16]).buffer)[0]!,
      );
    case "float16":
      return Array.from(new Uint16Array(bytes.slice().buffer), (b) => minifloat(b, 5, 10));
    case "float8_e4m3fn":
      return Array.from(bytes, (b) => minifloat(b, 4, 3)); // no NaN among trained weights (0x7f / 0xff)
    default:
      throw new Error(`not a narrow dtype: ${t.dtype}`);
  }
}

const NARROW: readonly DType[] = ["bfloat16", "float16", "float8_e4m3fn"];

/** A trained model's training state with every float32 tensor narrowed, in turn, to bf16, fp16, FP8. */
async function narrowedState() {
  const model = buildModel();
  const optimizer = makeOptimizer("adam");
  model.compile({ optimizer, loss: "meanSquaredError" });
  const { x, y } = trainingData();
  await model.trainOnBatch(x, y);
  const sd = await toStateDict(model, { optimizer });
  const expected = new Map<string, { dtype: DType; values: number[] }>();
  let k = 0;
  const walk = (node: StateDict, prefix: string) => {
    for (const [key, value] of Object.entries(node)) {
      const fqn = `${prefix}${key}`;
      if (isTensor(value)) {
        if (value.dtype !== "float32" || fqn.startsWith("optimizer.hidden")) continue;
        const dtype = NARROW[k++ % NARROW.length]!;
        const narrowed = narrow(value, dtype);
        (node as Record<string, unknown>)[key] = narrowed;
        expected.set(fqn, { dtype, values: decode(narrowed) });
      } else if (typeof value === "object" && value !== null) walk(value as StateDict, `${fqn}.`);
    }
  };
  walk(sd, "");
  return { sd, expected };
}

describe("@dcpjs/tfjs: a bf16 / fp16 / FP8 checkpoint restores into a float32 model, cast as dcp.load casts", () => {
  it("loadTrainingState casts every weight and optimizer slot to float32 (the exact values of the saved ones) and lists them", async () => {
    const { sd, expected } = await narrowedState();
    const ckpt = join(await tempDir(), "ckpt");
    await save(sd, { checkpointId: ckpt });
    const model = buildModel();
    const optimizer = makeOptimizer("adam");
    model.compile({ optimizer, loss: "meanSquaredError" });
    const { cast } = await loadTrainingState(model, { checkpointId: ckpt, optimizer });

    expect(new Set(cast.map((c) => c.from))).toEqual(new Set(NARROW));
    expect([...cast].sort((a, b) => a.fqn.localeCompare(b.fqn))).toEqual(
      [...expected]
        .map(([fqn, { dtype }]): CastTensor => ({ fqn, from: dtype, to: "float32" }))
        .sort((a, b) => a.fqn.localeCompare(b.fqn)),
    );
    const restored = await toStateDict(model, { optimizer });
    const layers = (restored.model as StateDict).layers as Record<string, Record<string, Tensor>>;
    const slots = (restored.optimizer as unknown as { slots: Tensor[] }).slots;
    let checked = 0;
    for (const [fqn, { values }] of expected) {
      const parts = fqn.split(".");
      const t =
        parts[0] === "model" ? layers[parts[2]!]![parts.slice(3).join(".")]! : slots[Number(parts[2])]!;
      expect(t.dtype, fqn).toBe("float32");
      expect(Array.from(t.data as Float32Array), fqn).toEqual(values);
      checked++;
    }
    expect(checked).toBeGreaterThanOrEqual(8); // 4 weights, 8 Adam slots
  });

  it("strictDtype refuses the bf16 weight with DTYPE_MISMATCH naming it", async () => {
    const { sd } = await narrowedState();
    const ckpt = join(await tempDir(), "ckpt");
    await save(sd, { checkpointId: ckpt });
    const model = buildModel();
    await expect(loadTrainingState(model, { checkpointId: ckpt, strictDtype: true })).rejects.toMatchObject({
      code: "DTYPE_MISMATCH",
      message: expect.stringMatching(/"model\.layers\.0\.kernel" to be saved as float32.*got bfloat16/),
    });
  });

  it("dcpjsIOHandler loads a checkpoint whose weights were saved bf16 / fp16 / FP8 into a float32 model and reports each through onCast", async () => {
    const dir = await tempDir();
    const model = buildModel();
    await model.save(dcpjsIOHandler(join(dir, "f32")));
    const sd = await loadStateDictFromKeys({ checkpointId: join(dir, "f32") });
    const weights = sd.weights as Tensor[];
    const expected = weights.map((w, k) => {
      const narrowed = narrow(w, NARROW[k % NARROW.length]!);
      weights[k] = narrowed;
      return decode(narrowed);
    });
    await save(sd, { checkpointId: join(dir, "narrow") });

    const seen: (CastTensor & { weight: string })[] = [];
    const again = await tf.loadLayersModel(
      dcpjsIOHandler(join(dir, "narrow"), { onCast: (c) => seen.push(c) }),
    );
    expect(again.weights.map((w) => Array.from(w.read().dataSync()))).toEqual(expected);
    expect(seen).toEqual(
      model.weights.map((w, k) => ({
        fqn: `weights.${k}`,
        weight: w.name,
        from: NARROW[k % NARROW.length],
        to: "float32",
      })),
    );
    await expect(
      tf.loadLayersModel(dcpjsIOHandler(join(dir, "narrow"), { load: { strictDtype: true } })),
    ).rejects.toMatchObject({ code: "DTYPE_MISMATCH" });
  });
});
