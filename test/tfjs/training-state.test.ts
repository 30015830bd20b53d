import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { createLocalProcessGroups, type StateDict, save } from "@dcpjs/core";
import { METADATA_FILE } from "@dcpjs/core/extend";
import { decodeMetadata } from "@dcpjs/core/testing";
import { buildModel, float32Bits, makeOptimizer, trainingData } from "@dcpjs/demo-kit";
import { dcpjsIOHandler, loadTrainingState, restoreStateDict, toStateDict } from "@dcpjs/tfjs";
import * as tf from "@tensorflow/tfjs";
import { beforeAll, describe, expect, it } from "vitest";
import { exited, spawnTs } from "../support/child.js";
import { tempDir } from "../support/tmp.js";

beforeAll(async () => {
  await tf.setBackend("cpu");
});

/** Runs test/support/tfjs-train.ts in a new process and returns what it wrote. */
async function train(mode: "full" | "resume", optimizer: string, ckpt: string, out: string) {
  const child = spawnTs("./tfjs-train.ts", [mode, optimizer, ckpt, out]);
  let stderr = "";
  child.stderr?.on("data", (d) => {
    stderr += String(d);
  });
  expect(await exited(child), stderr).toBe("0");
  return JSON.parse(await readFile(out, "utf8")) as { losses: string[]; weights: string[] };
}

const allBits = (model: tf.LayersModel) =>
  model.weights.map((w) => float32Bits(Array.from(w.read().dataSync())).join(""));
const slotBits = async (o: tf.Optimizer) =>
  (await o.getWeights()).map((w) => `${w.name}:${float32Bits(Array.from(w.tensor.dataSync())).join("")}`);

describe("@dcpjs/tfjs: checkpoint TF.js training and resume it in a new process, bit for bit", () => {
  it.each(["sgd", "momentum", "adam", "adamax", "rmsprop", "adagrad", "adadelta"])(
    "%s: train 5, checkpoint, train 5 — a new process restores and trains 5: identical losses and weights",
    async (optimizer) => {
      const dir = await tempDir();
      const ckpt = join(dir, "ckpt");
      const full = await train("full", optimizer, ckpt, join(dir, "full.json"));
      const resumed = await train("resume", optimizer, ckpt, join(dir, "resumed.json"));
      expect(full.losses.every((bits) => (Number.parseInt(bits, 16) & 0x7f800000) !== 0x7f800000)).toBe(true); // finite
      expect(resumed.losses).toEqual(full.losses);
      expect(resumed.weights).toEqual(full.weights);
    },
  );

  it("a 2-rank save stores one copy of the replicated weights and shards the optimizer's slots; 3 ranks restore it", async () => {
    const dir = await tempDir();
    const { x, y } = trainingData();
    const replicas = [0, 1].map(() => {
      const model = buildModel();
      const optimizer = makeOptimizer("adam");
      model.compile({ optimizer, loss: "meanSquaredError" });
      return { model, optimizer };
    });
    for (let i = 0; i < 3; i++) for (const r of replicas) await r.model.trainOnBatch(x, y);
    expect(allBits(replicas[1]!.model)).toEqual(allBits(replicas[0]!.model));
    await Promise.all(
      createLocalProcessGroups(2).map(async (pg) => {
        const { model, optimizer } = replicas[pg.rank]!;
        const sd = await toStateDict(model, { optimizer, shard: { rank: pg.rank, worldSize: 2 } });
        await save(sd, { checkpointId: dir, processGroup: pg });
      }),
    );
    const md = decodeMetadata(await readFile(join(dir, METADATA_FILE)));
    const files = (key: string) =>
      [...md.storageData.entries()]
        .filter(([k]) => k.startsWith(`${key}\u0000`))
        .map(([, v]) => v.relativePath);
    const kernel = md.stateDictMetadata.get("model.layers.0.kernel");
    expect(kernel?.type === "tensor" && kernel.chunks).toHaveLength(1); // one copy, not one per rank
    expect(files("model.layers.0.kernel")).toHaveLength(1);
    const slot = md.stateDictMetadata.get("optimizer.slots.0");
    expect(slot?.type === "tensor" && slot.chunks.length).toBe(2); // rows split between the ranks
    expect(new Set(files("optimizer.slots.0").map((f) => f.slice(0, 4)))).toEqual(new Set(["__0_", "__1_"]));

    const reference = await slotBits(replicas[0]!.optimizer);
    const restored = await Promise.all(
      createLocalProcessGroups(3).map(async (pg) => {
        const model = buildModel();
        const optimizer = makeOptimizer("adam");
        model.compile({ optimizer, loss: "meanSquaredError" });
        await loadTrainingState(model, { checkpointId: dir, optimizer, processGroup: pg });
        return { weights: allBits(model), slots: await slotBits(optimizer), model, optimizer };
      }),
    );
    for (const r of restored) {
      expect(r.weights).toEqual(allBits(replicas[0]!.model));
      expect(r.slots.map((s) => s.split(":")[1])).toEqual(reference.map((s) => s.split(":")[1]));
    }
    // and training goes on identically
    const next = float32Bits([(await replicas[0]!.model.trainOnBatch(x, y)) as number]);
    expect(float32Bits([(await restored[2]!.model.trainOnBatch(x, y)) as number])).toEqual(next);
  });

  it("refuses an optimizer of another class and a checkpoint that lacks a weight, naming them", async () => {
    const model = buildModel();
    const sd = await toStateDict(model, { optimizer: makeOptimizer("sgd") });
    await expect(
      restoreStateDict(buildModel(), sd, { optimizer: makeOptimizer("adam") }),
    ).rejects.toMatchObject({
      code: "INVALID_STATE_DICT",
      message: "Expected an optimizer of class SGD (as saved), got Adam",
    });
    const layers = (sd.model as StateDict).layers as Record<string, Record<string, unknown>>;
    delete layers["1"]!.bias;
    await expect(restoreStateDict(buildModel(), sd)).rejects.toMatchObject({
      code: "MISSING_KEY",
      message: 'Expected the checkpoint to hold "model.layers.1.bias", it does not',
    });
  });
});

describe("@dcpjs/tfjs IOHandler: model.save and tf.loadLayersModel through dcpjs", () => {
  it("dcp:// round-trips topology, weights and (includeOptimizer) the optimizer's weights", async () => {
    const dir = await tempDir();
    const model = buildModel();
    model.compile({ optimizer: makeOptimizer("momentum"), loss: "meanSquaredError" });
    const { x, y } = trainingData();
    for (let i = 0; i < 3; i++) await model.trainOnBatch(x, y);
    await model.save(`dcp://${dir}`, { includeOptimizer: true });
    const loaded = await tf.loadLayersModel(`dcp://${dir}`);
    expect(allBits(loaded)).toEqual(allBits(model));
    const predict = (m: tf.LayersModel) => float32Bits(Array.from((m.predict(x) as tf.Tensor).dataSync()));
    expect(predict(loaded)).toEqual(predict(model));
    expect(loaded.optimizer.getClassName()).toBe("Momentum");
    expect((await slotBits(loaded.optimizer)).map((s) => s.split(":")[1])).toEqual(
      (await slotBits(model.optimizer)).map((s) => s.split(":")[1]),
    );
  });

  it("an explicit handler saves to a plain folder and loads back", async () => {
    const dir = await tempDir();
    const model = buildModel();
    await model.save(dcpjsIOHandler(dir));
    const loaded = await tf.loadLayersModel(dcpjsIOHandler(dir));
    expect(allBits(loaded)).toEqual(allBits(model));
  });
});
