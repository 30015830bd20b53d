import { writeFile } from "node:fs/promises";
import { asyncSave, createStorageReader, latestCheckpoint, type ProcessGroup } from "@dcpjs/core";
import { buildModel, float32Bits, makeOptimizer, trainingData } from "@dcpjs/demo-kit";
import { loadTrainingState, toStateDict } from "@dcpjs/tfjs";
import type * as tf from "@tensorflow/tfjs-core";
import type { LayersModel } from "@tensorflow/tfjs-layers";

/** What one training run is told (the same for every rank). */
export interface TrainRunConfig {
  /** `run`: train from scratch with checkpoints, then crash; `resume`: continue from the newest committed checkpoint. */
  readonly mode: "run" | "resume";
  /** Steps of the whole training. */
  readonly steps: number;
  /** Checkpoint every this many steps. */
  readonly every: number;
  /** In `run`: die with SIGKILL right after this step (a save may be in flight). */
  readonly crashAfter: number;
  /** The run's checkpoint root; checkpoints are `{to}/step-000010`. */
  readonly to: string;
  /** The optimizer's name. */
  readonly optimizer: string;
  /** Units of the hidden layer. */
  readonly hidden: number;
  /**
   * How long each step holds the thread after its TF.js step, in ms: the synchronous CPU time of
   * a larger model's step (0.25–0.4 s in the run that reported #25), during which nothing else
   * runs on the thread — the saves must go on elsewhere.
   */
  readonly stepMs: number;
  /** In `resume`, rank 0 writes its {@link ResumeReport} here. */
  readonly out?: string;
}

/** What a resumed run reports: where it resumed and every loss and final weight as float32 bits. */
export interface ResumeReport {
  readonly from: string;
  readonly startStep: number;
  /** Losses of steps `startStep + 1` … `steps`. */
  readonly losses: string[];
  readonly weights: string[];
}

/** The checkpoint of step `n` under `to`. */
export function checkpointOf(to: string, n: number): string {
  return `${to}/step-${String(n).padStart(6, "0")}`;
}

/** Whether a checkpoint's `.metadata` is committed (readable). */
async function isCommitted(id: string): Promise<boolean> {
  const reader = await createStorageReader(id);
  return reader.readMetadata().then(
    () => true,
    () => false,
  );
}

/** The newest committed checkpoint among the steps `every`, `2 × every`, … ≤ `upTo`, or undefined. */
export async function newestCommitted(to: string, every: number, upTo: number): Promise<string | undefined> {
  for (let n = Math.floor(upTo / every) * every; n > 0; n -= every) {
    const id = checkpointOf(to, n);
    if (await isCommitted(id)) return id;
  }
  return undefined;
}

/** What a run tells about each save it requests, once it has requested the one before. */
export interface SaveRequest {
  /** The step of the save requested now. */
  readonly step: number;
  /** The step of the save before it. */
  readonly previous: number;
  /** Whether that save's checkpoint was committed (its `.metadata` readable) when this one was requested. */
  readonly previousCommitted: boolean;
  /** Whether that save's `completed` had settled when this one was requested. */
  readonly previousSettled: boolean;
}

/** Holds the thread for `ms` milliseconds: a step's synchronous CPU time. */
function holdThread(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // a synchronous step: no callback of this thread's event loop runs meanwhile
  }
}

/** All weights of a model as float32 bit strings. */
export function weightBits(model: LayersModel): string[] {
  return model.weights.map((w) => float32Bits(Array.from(w.read().dataSync())).join(""));
}

/**
 * Trains one data-parallel replica per process-group rank: every rank trains the same model on
 * the same batch (as after an all-reduce of gradients), checkpoints every `every` steps with
 * `asyncSave` (replicated weights written once, optimizer slots sharded across ranks), and — in
 * `run` mode — kills its process after `crashAfter` steps; in `resume` mode it first restores the
 * newest committed checkpoint and trains to the end.
 *
 * @param groups - this process's ranks (several in-process ranks, or one rank of a Redis group).
 * @param config - see {@link TrainRunConfig}.
 * Each step holds the thread for `stepMs` (a synchronous CPU step): the saves commit on
 * `asyncSave`'s own thread meanwhile, so each one has committed before the next is requested,
 * which `onSave` reports (no waiting on the previous save).
 *
 * @param onStep - called after each step with its number.
 * @param onSave - called when a save is requested after an earlier one, before anything awaits it.
 */
export async function trainRanks(
  groups: readonly ProcessGroup[],
  config: TrainRunConfig,
  onStep: (step: number) => void,
  onSave: (request: SaveRequest) => void = () => {},
): Promise<void> {
  const { x, y } = trainingData();
  const replicas = groups.map((pg) => {
    const model = buildModel(config.hidden);
    const optimizer = makeOptimizer(config.optimizer);
    model.compile({ optimizer, loss: "meanSquaredError" });
    return { pg, model, optimizer };
  });
  let start = 0;
  let from = "";
  if (config.mode === "resume") {
    // What a training program calls after a crash: the newest committed checkpoint under the run.
    const found = await latestCheckpoint(config.to);
    if (!found) throw new Error(`Expected a committed checkpoint under ${config.to}, found none`);
    from = found;
    const restored = await Promise.all(
      replicas.map((r) =>
        loadTrainingState(r.model, { checkpointId: found, optimizer: r.optimizer, processGroup: r.pg }),
      ),
    );
    start = (restored[0]!.extra as { step: number }).step;
  }
  const losses: string[] = [];
  let inFlight: Promise<unknown> | undefined;
  let previous = { step: 0, settled: true };
  for (let step = start + 1; step <= config.steps; step++) {
    const stepLosses = await Promise.all(replicas.map((r) => r.model.trainOnBatch(x, y) as Promise<number>));
    holdThread(config.stepMs);
    losses.push(...float32Bits([stepLosses[0]!]));
    onStep(step);
    if (config.mode === "run" && step % config.every === 0) {
      if (previous.step > 0) {
        // Nothing waited on the previous save: it was committed by its own thread meanwhile.
        const previousCommitted = await isCommitted(checkpointOf(config.to, previous.step));
        onSave({ step, previous: previous.step, previousCommitted, previousSettled: previous.settled });
      }
      await inFlight; // surfaces the previous save's failure (it has settled: see onSave)
      const saves = await Promise.all(
        replicas.map(async (r) =>
          asyncSave(
            await toStateDict(r.model, {
              optimizer: r.optimizer as tf.Optimizer,
              shard: { rank: r.pg.rank, worldSize: r.pg.size },
              extra: { step },
            }),
            { checkpointId: checkpointOf(config.to, step), processGroup: r.pg },
          ),
        ),
      );
      await Promise.all(saves.map((s) => s.staged));
      inFlight = Promise.all(saves.map((s) => s.completed));
      const current = { step, settled: false };
      previous = current;
      const settle = () => {
        current.settled = true;
      };
      inFlight.then(settle, settle); // a failure is surfaced when awaited before the next save
    }
    if (config.mode === "run" && step === config.crashAfter) process.kill(process.pid, "SIGKILL");
  }
  await inFlight;
  if (config.out && replicas[0]!.pg.rank === 0) {
    const report: ResumeReport = { from, startStep: start, losses, weights: weightBits(replicas[0]!.model) };
    await writeFile(config.out, JSON.stringify(report));
  }
}
