// The demo page: trains a small seeded TF.js model (CPU backend, or WebGL on request),
// checkpoints the model and its optimizer to OPFS with asyncSave every N steps, and after a
// reload (the "kill") resumes from the newest committed checkpoint. Query parameters (all
// optional): ckpt (an opfs:// folder), steps, every, optimizer, delay (ms between steps, to watch
// it), backend (cpu or webgl), init (an http(s):// checkpoint to start from when OPFS has
// none: the model loaded from the HTTP server). It reports on the page and in
// `globalThis.dcpjsDemo` (what the tests read).
import { asyncSave, latestCheckpoint, listCheckpoints } from "@dcpjs/core";
import { buildModel, float32Bits, makeOptimizer, trainingData } from "@dcpjs/demo-kit/train-model";
import "@dcpjs/http";
import "@dcpjs/opfs";
import { loadTrainingState, toStateDict } from "@dcpjs/tfjs";
import "@tensorflow/tfjs-backend-webgl";
import * as tf from "@tensorflow/tfjs-core";
import { type DemoSettings, type DemoState, demoSettings } from "./settings.js";

const settings: DemoSettings = demoSettings(new URLSearchParams(location.search), location.href);
const state: DemoState = { phase: "starting", step: 0, resumedAt: undefined, losses: {}, checkpoints: [] };
(globalThis as { dcpjsDemo?: DemoState }).dcpjsDemo = state;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

async function showCheckpoints(): Promise<void> {
  const found = await listCheckpoints(settings.ckpt);
  state.checkpoints = found.map((c) => c.id);
  $("checkpoints").replaceChildren(
    ...found.map((c) => {
      const li = document.createElement("li");
      li.textContent = `${c.id} (${c.state})`;
      return li;
    }),
  );
}

function showProgress(): void {
  const bar = $<HTMLProgressElement>("progress");
  bar.max = settings.steps;
  bar.value = state.step;
  $("step").textContent = `step ${state.step} of ${settings.steps}`;
}

/** Each weight of a model as its float32 bits, concatenated: equal strings, bit-identical weights. */
function weightBits(model: ReturnType<typeof buildModel>): string[] {
  return model.weights.map((w) => float32Bits(Array.from(w.read().dataSync())).join(""));
}

async function run(): Promise<void> {
  if (!(await tf.setBackend(settings.backend)))
    throw new Error(`Expected the ${settings.backend} backend, got none`);
  state.backend = tf.getBackend();
  $("backend").textContent = `TF.js ${tf.version_core}, backend ${tf.getBackend()}`;
  const model = buildModel();
  const optimizer = makeOptimizer(settings.optimizer);
  model.compile({ optimizer, loss: "meanSquaredError" });
  const { x, y } = trainingData();

  const latest = await latestCheckpoint(settings.ckpt);
  if (latest !== undefined) {
    const { extra } = await loadTrainingState<{ step: number }>(model, { checkpointId: latest, optimizer });
    state.step = extra.step;
    state.resumedAt = extra.step;
    $("status").textContent = `resumed at step ${extra.step} from ${latest}`;
  } else if (settings.init !== undefined) {
    // No checkpoint in OPFS yet: the model and optimizer come from the HTTP server.
    const { extra } = await loadTrainingState<{ step: number }>(model, {
      checkpointId: settings.init,
      optimizer,
    });
    state.step = extra.step;
    state.loadedFrom = { url: settings.init, step: extra.step, weights: weightBits(model) };
    $("status").textContent = `loaded the model from ${settings.init} (step ${extra.step})`;
  } else {
    $("status").textContent = "started from scratch";
  }
  await showCheckpoints();
  showProgress();

  state.phase = "training";
  let pending: Promise<unknown> = Promise.resolve();
  while (state.step < settings.steps) {
    const loss = (await model.trainOnBatch(x, y)) as number;
    state.step += 1;
    state.losses[state.step] = float32Bits([loss])[0]!;
    showProgress();
    if (state.step % settings.every === 0) {
      const { staged, completed } = asyncSave(
        await toStateDict(model, { optimizer, extra: { step: state.step } }),
        { checkpointId: `${settings.ckpt}/step-${state.step}` },
      );
      await staged; // the weights may change from here; the write runs on while training goes on
      pending = completed.then(showCheckpoints);
    }
    if (state.step === settings.hangAt && state.resumedAt === undefined) {
      state.phase = "hanging"; // the save just started writes on; the test reloads the page now
      await new Promise(() => {});
    }
    if (settings.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, settings.delayMs));
  }
  await pending;
  state.weights = weightBits(model);
  state.phase = "done";
  $("status").textContent += " — done";
}

run().catch((error: unknown) => {
  state.phase = "failed";
  state.error = error instanceof Error ? `${error.name}: ${error.message}\n${error.stack}` : String(error);
  $("status").textContent = `failed: ${state.error}`;
});
