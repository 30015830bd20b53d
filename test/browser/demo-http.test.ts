// The demo page loads its model over HTTP: a training state saved by Node (the same seeded model
// and optimizer, trained 7 steps, @dcpjs/tfjs's toStateDict) is served beside the page with byte
// ranges, and the page — with no OPFS checkpoint yet — starts from it through @dcpjs/http's fetch
// transport, bit for bit; once it has checkpointed to OPFS, a reload resumes from OPFS instead.
import { join } from "node:path";
import { save } from "@dcpjs/core";
import { buildModel, float32Bits, makeOptimizer, trainingData } from "@dcpjs/demo-kit";
import { toStateDict } from "@dcpjs/tfjs";
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type DemoPageHarness, demoFinished, startDemoPage } from "../support/demo-page.js";

let demo: DemoPageHarness;
let savedWeights: string[];

beforeAll(async () => {
  demo = await startDemoPage();
  await tf.setBackend("cpu");
  const model = buildModel();
  const optimizer = makeOptimizer("adam");
  model.compile({ optimizer, loss: "meanSquaredError" });
  const { x, y } = trainingData();
  for (let i = 0; i < 7; i++) await model.trainOnBatch(x, y);
  savedWeights = model.weights.map((w) => float32Bits(Array.from(w.read().dataSync())).join(""));
  await save(await toStateDict(model, { optimizer, extra: { step: 7 } }), {
    checkpointId: join(demo.dir, "models", "step-7"),
  });
});

afterAll(async () => {
  await demo?.close();
});

it("starts from a model loaded over HTTP when OPFS has no checkpoint, then resumes from OPFS", async () => {
  const page = await demo.chromium.context.newPage();
  const url = demo.url({ ckpt: "opfs://from-http", steps: 12, every: 5, init: "models/step-7" });
  await page.goto(url);
  const first = await demoFinished(page);
  expect(first.loadedFrom?.url).toBe(`${demo.server.url}models/step-7`);
  expect(first.loadedFrom?.step).toBe(7);
  expect(first.loadedFrom?.weights).toEqual(savedWeights);
  expect(Object.keys(first.losses).map(Number)).toEqual([8, 9, 10, 11, 12]);
  expect(await page.locator("#status").textContent()).toMatch(
    /^loaded the model from http:\/\/127\.0\.0\.1:\d+\/models\/step-7 \(step 7\)/,
  );
  expect(first.checkpoints).toEqual(["opfs://from-http/step-10"]);

  await page.goto(demo.url({ ckpt: "opfs://from-http", steps: 14, every: 5, init: "models/step-7" }));
  const second = await demoFinished(page);
  expect(second.resumedAt).toBe(10);
  expect(second.loadedFrom).toBeUndefined();
  await page.close();
});
