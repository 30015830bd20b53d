// Child process for the TF.js resume tests: trains a small seeded model on the CPU backend.
//   tfjs-train.ts full   OPTIMIZER CKPT OUT   trains 5 steps, checkpoints to CKPT, trains 5 more
//   tfjs-train.ts resume OPTIMIZER CKPT OUT   restores CKPT into a fresh model, trains 5 steps
// and writes {losses, weights} to OUT: the last 5 losses and every final weight, as float32 bits.
import { writeFile } from "node:fs/promises";
import { save } from "@dcpjs/core";
import "@dcpjs/s3"; // registers the s3:// storage backend, for CKPT URIs
import { buildModel, float32Bits, makeOptimizer, trainingData } from "@dcpjs/demo-kit";
import { loadTrainingState, toStateDict } from "@dcpjs/tfjs";
import * as tf from "@tensorflow/tfjs";

const [mode, optimizerName, ckpt, out] = process.argv.slice(2) as [string, string, string, string];
await tf.setBackend("cpu");
const model = buildModel();
const optimizer = makeOptimizer(optimizerName);
model.compile({ optimizer, loss: "meanSquaredError" });
const { x, y } = trainingData();
const step = async () => float32Bits([(await model.trainOnBatch(x, y)) as number]);

if (mode === "full") {
  for (let i = 0; i < 5; i++) await step();
  await save(await toStateDict(model, { optimizer, extra: { step: 5 } }), { checkpointId: ckpt });
} else {
  const { extra } = await loadTrainingState(model, { checkpointId: ckpt, optimizer });
  if ((extra as { step: number }).step !== 5) throw new Error("extra.step was not restored");
}
const losses: string[] = [];
for (let i = 0; i < 5; i++) losses.push(...(await step()));
const weights = model.weights.map((w) => float32Bits(Array.from(w.read().dataSync())).join(""));
await writeFile(out, JSON.stringify({ losses, weights }));
