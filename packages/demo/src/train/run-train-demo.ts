import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildModel, float32Bits, makeOptimizer, trainingData } from "@dcpjs/demo-kit";
import * as tf from "@tensorflow/tfjs-core";
import cliProgress from "cli-progress";
import { startLocalRedis } from "../demo/local-redis.js";
import {
  checkpointOf,
  newestCommitted,
  type ResumeReport,
  type SaveRequest,
  type TrainRunConfig,
  weightBits,
} from "./train-rank.js";

/** Options of {@link runTrainDemo}. */
export interface TrainDemoOptions {
  /** The checkpoint root (a folder, cleared first, or `s3://bucket/prefix`, under which a fresh run prefix is used). @default "./checkpoints/train" */
  readonly to?: string;
  /** Training steps. @default 20 */
  readonly steps?: number;
  /** Checkpoint every this many steps. @default 5 */
  readonly every?: number;
  /** The first run dies (SIGKILL) right after this step. @default 12 */
  readonly crashAfter?: number;
  /** Data-parallel ranks, in one process. @default 2 */
  readonly ranks?: number;
  /** Run the ranks as this many separate processes meeting in Redis instead. @default undefined */
  readonly procs?: number;
  /** The Redis of `procs`. @default `DCPJS_REDIS_URL`, `REDIS_URL`, else a `redis-server` started for the run */
  readonly redisUrl?: string;
  /** The optimizer. @default "adam" */
  readonly optimizer?: string;
  /** Units of the hidden layer. @default 64 */
  readonly hidden?: number;
  /**
   * The synchronous CPU time of each step of the checkpointed runs, in ms (the thread is held
   * after each TF.js step, as by a larger model's step). @default 300
   */
  readonly stepMs?: number;
  /** Draw progress bars (when stderr is a terminal). @default true */
  readonly progress?: boolean;
  /** Where to print. @default console.log */
  readonly log?: (line: string) => void;
}

/** What {@link runTrainDemo} found. */
export interface TrainDemoSummary {
  readonly ranks: number;
  readonly steps: number;
  /** The checkpoint the second run resumed from, and its step. */
  readonly resumedFrom: string;
  readonly startStep: number;
  /** Losses and weight tensors compared with the uninterrupted run. */
  readonly lossesCompared: number;
  readonly weightsCompared: number;
  /** What differed (empty when every loss and weight is bit-identical). */
  readonly mismatches: string[];
  /** The saves requested before the previous one had committed (empty: each committed in time). */
  readonly overlappingSaves: string[];
}

function stepBar(enabled: boolean, name: string, total: number) {
  const bar = new cliProgress.SingleBar(
    { format: `${name.padEnd(26)} {bar} step {value}/{total}`, hideCursor: true, stream: process.stderr },
    cliProgress.Presets.shades_classic,
  );
  if (enabled) bar.start(total, 0);
  return {
    update: (step: number) => enabled && bar.update(step),
    stop: () => enabled && bar.stop(),
  };
}

/** Runs one phase as child processes of `dcp-demo demo-train-rank` and resolves when all have exited. */
function runChildren(
  config: TrainRunConfig,
  ranks: number,
  redisUrl: string | undefined,
  onStep: (step: number) => void,
  onSave: (save: SaveRequest) => void = () => {},
): Promise<(string | null)[]> {
  const script = process.argv[1]!;
  const groupId = `train-${Date.now().toString(36)}-${config.mode}`;
  const spawnOne = (env: Record<string, string>): ChildProcess =>
    spawn(process.execPath, [...process.execArgv, script, "demo-train-rank"], {
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      env: { ...process.env, DCP_TRAIN_CONFIG: JSON.stringify(config), ...env },
    });
  const children = redisUrl
    ? Array.from({ length: ranks }, (_, rank) =>
        spawnOne({
          RANK: String(rank),
          WORLD_SIZE: String(ranks),
          DCPJS_REDIS_URL: redisUrl,
          DCPJS_GROUP_ID: groupId,
          DCPJS_TIMEOUT_MS: "120000",
        }),
      )
    : [spawnOne({ DCP_TRAIN_RANKS: String(ranks) })];
  return Promise.all(
    children.map(
      (child) =>
        new Promise<string | null>((resolve) => {
          child.on("message", (m: { step?: number; save?: SaveRequest }) => {
            if (typeof m.step === "number") onStep(m.step);
            if (m.save) onSave(m.save);
          });
          child.on("exit", (code, signal) => resolve(signal ?? (code === 0 ? null : `exit ${code}`)));
        }),
    ),
  );
}

/**
 * The training demo: trains a small seeded TF.js model as data-parallel ranks with `asyncSave`
 * checkpoints, each step holding the thread for `stepMs` (a synchronous CPU step), kills the run
 * mid-training (a save may be in flight), resumes in new processes from the newest committed
 * checkpoint, and compares every loss and every final weight with an uninterrupted run, bit for
 * bit. The saves run on `asyncSave`'s own thread, so each commits before the next is requested
 * (`overlappingSaves` lists those that did not).
 *
 * @param options - see {@link TrainDemoOptions}.
 * @returns what was compared; `mismatches` is empty when the resume was exact.
 * @throws {@link Error} when a phase's processes fail, or no checkpoint was committed before the crash.
 */
export async function runTrainDemo(options: TrainDemoOptions = {}): Promise<TrainDemoSummary> {
  const log = options.log ?? ((line: string) => console.log(line));
  const steps = options.steps ?? 20;
  const every = options.every ?? 5;
  const crashAfter = options.crashAfter ?? 12;
  const ranks = options.procs ?? options.ranks ?? 2;
  const optimizer = options.optimizer ?? "adam";
  const hidden = options.hidden ?? 64;
  const stepMs = options.stepMs ?? 300;
  const bars = (options.progress ?? true) && process.stderr.isTTY === true;
  if (!(every <= crashAfter && crashAfter < steps)) {
    throw new Error(`Expected every (${every}) <= crashAfter (${crashAfter}) < steps (${steps})`);
  }
  let to = options.to ?? "./checkpoints/train";
  if (to.includes("://")) to = `${to.replace(/\/$/, "")}/run-${Date.now().toString(36)}`;
  else await rm(to, { recursive: true, force: true });
  tf.enableProdMode(); // no "install the node backend" banner; the CPU backend is the point

  // 1. The uninterrupted run, in this process.
  const ref = stepBar(bars, "uninterrupted run", steps);
  const model = buildModel(hidden);
  model.compile({ optimizer: makeOptimizer(optimizer), loss: "meanSquaredError" });
  const { x, y } = trainingData();
  const referenceLosses: string[] = [];
  for (let step = 1; step <= steps; step++) {
    referenceLosses.push(...float32Bits([(await model.trainOnBatch(x, y)) as number]));
    ref.update(step);
  }
  ref.stop();
  const referenceWeights = weightBits(model);
  log(
    `model:  Dense(${hidden}, relu) → Dense(1), ${optimizer}, ${model.countParams()} parameters; ${steps} steps`,
  );

  let redis: { url: string; stop(): void } | undefined;
  if (options.procs !== undefined) {
    const url = options.redisUrl ?? process.env.DCPJS_REDIS_URL ?? process.env.REDIS_URL;
    redis = url ? { url, stop: () => {} } : await startLocalRedis();
  }
  const where = redis
    ? `${ranks} processes meeting in Redis at ${redis.url}`
    : `${ranks} ranks in one process`;
  const outDir = await mkdtemp(join(tmpdir(), "dcp-train-"));
  try {
    // 2. The run that crashes.
    const base = { steps, every, crashAfter, to, optimizer, hidden, stepMs };
    const run = stepBar(bars, `run (crashes after ${crashAfter})`, crashAfter);
    const overlapping = new Set<string>();
    const ended = await runChildren({ ...base, mode: "run" }, ranks, redis?.url, run.update, (save) => {
      if (!save.previousSettled)
        overlapping.add(
          `step ${save.previous}'s save had not committed when step ${save.step}'s was requested`,
        );
    });
    run.stop();
    if (ended.some((e) => e !== "SIGKILL"))
      throw new Error(`Expected the run to be killed, its ranks ended with ${ended.join(", ")}`);
    const states = await Promise.all(
      Array.from({ length: Math.floor(crashAfter / every) }, async (_, i) => {
        const n = (i + 1) * every;
        const committed = (await newestCommitted(to, every, n)) === checkpointOf(to, n);
        return `step ${n} ${committed ? "committed" : "not committed (in flight)"}`;
      }),
    );
    log(
      `run:    ${where}, ${stepMs} ms synchronous steps, asyncSave every ${every} steps → ${to}; killed after step ${crashAfter}`,
    );
    log(`        ${states.join(", ")}`);
    log(
      overlapping.size === 0
        ? "        every save had committed before the next was requested (on asyncSave's own thread)"
        : `        ${[...overlapping].join("; ")}`,
    );

    // 3. The resume, in new processes.
    const out = join(outDir, "resume.json");
    const resume = stepBar(bars, "resume", steps);
    const resumed = await runChildren({ ...base, mode: "resume", out }, ranks, redis?.url, resume.update);
    resume.stop();
    if (resumed.some((e) => e !== null))
      throw new Error(`Expected the resume to succeed, its ranks ended with ${resumed.join(", ")}`);
    const report = JSON.parse(await readFile(out, "utf8")) as ResumeReport;
    log(
      `resume: ${redis ? "new processes" : "a new process"} restored ${report.from} (step ${report.startStep}) and trained steps ${report.startStep + 1}–${steps}`,
    );

    const mismatches: string[] = [];
    report.losses.forEach((bits, i) => {
      const step = report.startStep + 1 + i;
      if (bits !== referenceLosses[step - 1])
        mismatches.push(`loss of step ${step}: ${bits} vs ${referenceLosses[step - 1]}`);
    });
    report.weights.forEach((bits, i) => {
      if (bits !== referenceWeights[i]) mismatches.push(`final weight ${model.weights[i]!.name} differs`);
    });
    return {
      ranks,
      steps,
      resumedFrom: report.from,
      startStep: report.startStep,
      lossesCompared: report.losses.length,
      weightsCompared: report.weights.length,
      mismatches,
      overlappingSaves: [...overlapping],
    };
  } finally {
    redis?.stop();
    await rm(outDir, { recursive: true, force: true });
  }
}
