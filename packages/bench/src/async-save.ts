import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { type AsyncSaveResult, asyncSave, type StagingMode, type Tensor } from "@dcpjs/core";
import { stageStateDict, stagingPoolFor } from "@dcpjs/core/testing";
import { report } from "./report.js";

const MiB = 1024 * 1024;

/** Options of {@link asyncSaveBench}. */
export interface AsyncSaveBenchOptions {
  /** MiB of state (float32 tensors in ordinary memory, or shared memory for `staging: "none"`). */
  readonly stateMib: number;
  /** Tensors the state is split into. */
  readonly tensors: number;
  /** Milliseconds of synchronous compute per training step: CPU time of the training thread (calibrated once, then fixed work). */
  readonly stepMs: number;
  /** Steps between saves. */
  readonly every: number;
  /** Saves per staging mode. */
  readonly saves: number;
  /** Steps of each loop without saves (one before, between and after the loops with saves). */
  readonly baselineSteps: number;
  /** The staging modes to run. */
  readonly staging: readonly StagingMode[];
  /** Scratch folder. */
  readonly dir: string;
}

setFlagsFromString("--expose-gc");
const collect = runInNewContext("gc") as () => void;
setFlagsFromString("--no-expose-gc");

/**
 * Copy bandwidths in GB/s (decimal), best of 7, the three taken in turns so that a machine's load
 * weighs on each alike: `memcpy` — the state's tensors copied one by one (`TypedArray#set`, a
 * single-core memcpy) into one ordinary buffer; `contiguous` — one memcpy of as many bytes between
 * two ordinary buffers; `staging` — {@link stageStateDict} with a warm pool (what `staged` waits
 * for, without the save).
 */
function bandwidths(
  sd: Record<string, Tensor>,
  bytes: number,
): { memcpy: number; contiguous: number; staging: number } {
  const tensors = Object.values(sd).map(
    (t) => new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength),
  );
  const dst = new Uint8Array(bytes);
  const src = new Uint8Array(bytes);
  dst.fill(1); // fault the pages in first
  src.fill(2);
  const pool = stagingPoolFor({});
  stageStateDict(sd, Number.POSITIVE_INFINITY, { pool }).release();
  const best = [Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY];
  const time = (i: number, fn: () => void) => {
    const t0 = performance.now();
    fn();
    best[i] = Math.min(best[i]!, performance.now() - t0);
  };
  for (let rep = 0; rep < 7; rep++) {
    time(0, () => {
      let offset = 0;
      for (const t of tensors) {
        dst.set(t, offset);
        offset += t.byteLength;
      }
    });
    time(1, () => dst.set(src));
    time(2, () => stageStateDict(sd, Number.POSITIVE_INFINITY, { pool }).release());
  }
  pool.letGo();
  const gbps = (ms: number) => bytes / 1e6 / ms;
  return { memcpy: gbps(best[0]!), contiguous: gbps(best[1]!), staging: gbps(best[2]!) };
}

/** A stand-in for a training step's synchronous compute: `n` rounds of float multiply-adds. */
const scratch = new Float64Array(16384);
function compute(n: number): number {
  let acc = 0;
  for (let r = 0; r < n; r++) {
    for (let i = 0; i < scratch.length; i++) {
      scratch[i] = scratch[i]! * 0.999 + i;
      acc += scratch[i]!;
    }
  }
  return acc;
}

/**
 * The rounds of {@link compute} that take `ms` milliseconds of this thread's CPU time (median of
 * 5 timings; wall time where the CPU time cannot be read): on a loaded machine a wall-time
 * calibration would make the steps shorter than `ms` of compute.
 */
function calibrate(ms: number): number {
  const clock = Number.isNaN(threadCpuMs()) ? () => performance.now() : threadCpuMs;
  compute(50);
  const t0 = clock();
  compute(50);
  const perRound = (clock() - t0) / 50;
  const rounds = Math.max(1, Math.round(ms / perRound));
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = clock();
    compute(rounds);
    times.push(clock() - t);
  }
  times.sort((a, b) => a - b);
  return Math.max(1, Math.round((rounds * ms) / times[2]!));
}

/** Yields to the event loop once, as a training loop does between steps (an `await` on a macrotask). */
function yieldOnce(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * CPU time this thread has run so far (ms), from /proc/thread-self/schedstat (Linux; NaN elsewhere):
 * a training step's CPU time, which a loaded machine's waits for a core do not inflate.
 */
function threadCpuMs(): number {
  try {
    return Number(readFileSync("/proc/thread-self/schedstat", "utf8").split(" ")[0]) / 1e6;
  } catch {
    return Number.NaN;
  }
}

/** Per step of a loop: wall milliseconds, and the CPU milliseconds of the training thread. */
interface StepTime {
  readonly ms: number;
  readonly cpuMs: number;
}

/** Time per step of a loop of `steps` steps without saves. */
async function baseline(steps: number, rounds: number): Promise<StepTime> {
  const t0 = performance.now();
  const c0 = threadCpuMs();
  for (let s = 0; s < steps; s++) {
    compute(rounds);
    await yieldOnce();
  }
  return { ms: (performance.now() - t0) / steps, cpuMs: (threadCpuMs() - c0) / steps };
}

function stateDict(o: AsyncSaveBenchOptions, shared: boolean): Record<string, Tensor> {
  const sd: Record<string, Tensor> = {};
  const bytes = Math.floor((o.stateMib * MiB) / o.tensors / 4) * 4;
  for (let i = 0; i < o.tensors; i++) {
    const data = new Uint8Array(shared ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes));
    for (let j = 0; j < bytes; j += 4096) data[j] = (i + j) & 0xff;
    sd[`layers.${i}.weight`] = { dtype: "float32", shape: [bytes / 4], data };
  }
  return sd;
}

function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

/**
 * RSS (bytes) at rest: the least of five readings 100 ms apart, each after a collection of this
 * thread (V8 frees array buffers' memory on a background thread after a collection, so one
 * reading may come too early and count garbage).
 */
async function rssAtRest(): Promise<number> {
  let rss = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 5; i++) {
    collect();
    await new Promise((r) => setTimeout(r, 100));
    rss = Math.min(rss, process.memoryUsage().rss);
  }
  return rss;
}

/** Where this process's memory lies now (MiB): /proc/self/status's RSS parts, V8's heap and array buffers. */
function memoryParts(): Record<string, number> {
  let status = "";
  try {
    status = readFileSync("/proc/self/status", "utf8");
  } catch {
    // not Linux
  }
  const kib = (field: string) =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? Number.NaN);
  const m = process.memoryUsage();
  return {
    RssAnon: kib("RssAnon") / 1024,
    RssFile: kib("RssFile") / 1024,
    RssShmem: kib("RssShmem") / 1024,
    heapUsed: m.heapUsed / MiB,
    external: m.external / MiB,
    arrayBuffers: m.arrayBuffers / MiB,
  };
}

function formatParts(parts: Record<string, number>): string {
  return Object.entries(parts)
    .map(([k, v]) => `${k} ${v.toFixed(1)}`)
    .join(", ");
}

interface Run {
  readonly mode: StagingMode;
  readonly blockedMs: number[];
  /** Blocked times of the saves requested after the previous one had completed. */
  readonly blockedFreeMs: number[];
  readonly msPerStep: number;
  /** The same, less the time blocked until `staged`: what the background save costs the steps. */
  readonly msPerStepUnblocked: number;
  /** CPU milliseconds of the training thread per step, staging included. */
  readonly cpuMsPerStep: number;
  readonly waited: number;
  readonly rssTenth: number;
  /** RSS at rest before the loop, the state dict allocated. */
  readonly rssBefore: number;
  readonly rssLast: number;
  readonly allocations: number;
  readonly seconds: number;
  /** {@link memoryParts} at the three readings: before the loop, after the 10th save, after the last. */
  readonly memory: readonly [Record<string, number>, Record<string, number>, Record<string, number>];
}

/** The training loop with a save every `every` steps, one staging mode. */
async function withSaves(
  o: AsyncSaveBenchOptions,
  mode: StagingMode,
  rounds: number,
  sd: Record<string, Tensor>,
): Promise<Run> {
  await mkdir(o.dir, { recursive: true });
  const dir = await mkdtemp(join(o.dir, `async-save-${mode}-`)); // of this run alone
  const pool = stagingPoolFor(undefined);
  pool.letGo();
  const allocations0 = pool.allocations;
  const blockedMs: number[] = [];
  const blockedFreeMs: number[] = [];
  const pending: Promise<unknown>[] = [];
  let waited = 0;
  let rssTenth = 0;
  let paused = 0;
  let last: AsyncSaveResult | undefined;
  let lastSettled = true;
  const steps = o.saves * o.every;
  const rssBefore = await rssAtRest();
  const memory: Record<string, number>[] = [memoryParts()];
  const t0 = performance.now();
  const c0 = threadCpuMs();
  let pausedCpu = 0;
  for (let s = 1; s <= steps; s++) {
    compute(rounds);
    if (s % o.every === 0) {
      const n = s / o.every;
      const free = lastSettled;
      if (!free) waited++;
      const tStage = performance.now();
      const save = asyncSave(sd, { checkpointId: join(dir, `step-${s}`), staging: mode });
      await save.staged;
      blockedMs.push(performance.now() - tStage);
      if (free) blockedFreeMs.push(performance.now() - tStage);
      lastSettled = false;
      last = save;
      const old = join(dir, `step-${s - 2 * o.every}`);
      pending.push(
        save.completed.then(async () => {
          lastSettled = true;
          await rm(old, { recursive: true, force: true });
        }),
      );
      if (n === Math.min(10, o.saves)) {
        // Read at rest, as after the last save: the loop pauses (not counted in its time) until
        // this save has completed, so that no save is in flight for either reading.
        const tPause = performance.now();
        const cPause = threadCpuMs();
        await save.completed;
        await new Promise((r) => setTimeout(r, 500)); // the worker threads' idle collection
        rssTenth = await rssAtRest();
        memory.push(memoryParts());
        paused += performance.now() - tPause;
        pausedCpu += threadCpuMs() - cPause;
      }
    }
    await yieldOnce();
  }
  const msPerStep = (performance.now() - t0 - paused) / steps;
  const cpuMsPerStep = (threadCpuMs() - c0 - pausedCpu) / steps;
  const msPerStepUnblocked = msPerStep - blockedMs.reduce((a, b) => a + b, 0) / steps;
  await last?.completed;
  await Promise.all(pending);
  await new Promise((r) => setTimeout(r, 500)); // the worker threads' idle collection
  const rssLast = await rssAtRest();
  memory.push(memoryParts());
  const allocations = pool.allocations - allocations0;
  pool.letGo();
  await rm(dir, { recursive: true, force: true });
  return {
    mode,
    blockedMs,
    blockedFreeMs,
    msPerStep,
    msPerStepUnblocked,
    cpuMsPerStep,
    waited,
    rssTenth,
    rssBefore,
    rssLast,
    allocations,
    seconds: (performance.now() - t0) / 1000,
    memory: memory as unknown as Run["memory"],
  };
}

/** Runs this benchmark for `o` in a child process of the same Node, its output passed through. */
function inChild(o: AsyncSaveBenchOptions): Promise<void> {
  const args = [
    ...process.execArgv,
    process.argv[1]!,
    "async-save",
    ...["--state-mib", o.stateMib, "--tensors", o.tensors, "--step-ms", o.stepMs, "--every", o.every],
    ...["--saves", o.saves, "--baseline-steps", o.baselineSteps, "--staging", o.staging[0]!, "--dir", o.dir],
  ].map(String);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: "inherit" });
    child.once("error", reject);
    child.once("exit", (code) =>
      code === 0 ? resolve() : reject(new Error(`Expected exit code 0, got ${code}`)),
    );
  });
}

/**
 * `pnpm bench async-save`: a training loop of synchronous steps with an `asyncSave` every few
 * steps — blocked time per save (until `staged`) against 256 MiB ÷ (0.5 × memcpy bandwidth
 * measured in the same run) + 20 ms, step-time inflation against the same loop without saves, and
 * RSS after the last save against after the 10th (issue #25).
 *
 * @param o - see {@link AsyncSaveBenchOptions}.
 */
export async function asyncSaveBench(o: AsyncSaveBenchOptions): Promise<void> {
  if (o.staging.length > 1) {
    // One fresh process per mode: what one mode's loop left to the collectors (its 256 MiB
    // buffers, the save thread's views of them) must not weigh on the next one's RSS readings.
    for (const mode of o.staging) await inChild({ ...o, staging: [mode] });
    return;
  }
  const stateBytes = Math.floor((o.stateMib * MiB) / o.tensors / 4) * 4 * o.tensors;
  // The state dicts live until the last reading: a state dict let go after the loop would drop out
  // of the RSS after the last save (its 256 MiB, collected once the loop no longer refers to it),
  // and 4 MiB tensors let go earlier would stay in glibc's heap (its mmap threshold rises to their
  // size after the first is freed) until a later trim — both read as the RSS falling.
  const plain = stateDict(o, false);
  const shared = o.staging.includes("none") ? stateDict(o, true) : undefined;
  const bw = bandwidths(plain, stateBytes);
  const memcpy = bw.memcpy;
  const rounds = calibrate(o.stepMs);
  // Each loop with saves is compared with the mean of the loops without saves just before and
  // just after it: a shared machine's load drifts during a run of minutes.
  const baselines = [await baseline(o.baselineSteps, rounds)];
  const runs: Run[] = [];
  for (const mode of o.staging) {
    runs.push(await withSaves(o, mode, rounds, mode === "none" ? shared! : plain));
    baselines.push(await baseline(o.baselineSteps, rounds));
  }
  const baseStepOf = (r: Run): StepTime => {
    const i = runs.indexOf(r);
    const [a, b] = [baselines[i]!, baselines[i + 1]!];
    return { ms: (a.ms + b.ms) / 2, cpuMs: (a.cpuMs + b.cpuMs) / 2 };
  };
  const baseOf = (r: Run) => baseStepOf(r).ms;
  const cpuInflation = (r: Run) => (r.cpuMsPerStep / baseStepOf(r).cpuMs - 1) * 100;
  // The copy alone, at the best staging bandwidth of this run, per save interval of base steps
  // (their CPU time, which a loaded machine does not stretch; wall time off Linux): the least
  // step-time inflation `"copy"` can have.
  const copyBound = (r: Run) => {
    if (r.mode !== "copy") return 0;
    const step = Number.isNaN(baseStepOf(r).cpuMs) ? baseOf(r) : baseStepOf(r).cpuMs;
    return (stateBytes / 1e6 / bw.staging / (o.every * step)) * 100;
  };
  const targetMs = stateBytes / 1e6 / (0.5 * memcpy) + 20;
  const tensorsKept = Object.keys(plain).length + Object.keys(shared ?? {}).length;
  const rows = [
    {
      name: "memcpy of the tensors into one buffer (best of 7)",
      bytes: stateBytes,
      seconds: stateBytes / 1e9 / memcpy,
    },
    {
      name: "memcpy, one contiguous block (best of 7)",
      bytes: stateBytes,
      seconds: stateBytes / 1e9 / bw.contiguous,
    },
    {
      name: "staging alone, warm pool (best of 7)",
      bytes: stateBytes,
      seconds: stateBytes / 1e9 / bw.staging,
    },
    ...runs.map((r) => {
      const sorted = [...r.blockedMs].sort((a, b) => a - b);
      return {
        name: `asyncSave staging: "${r.mode}", blocked until staged (median)`,
        bytes: stateBytes,
        seconds: quantile(sorted, 0.5) / 1000,
        extra: {
          "p95 ms": quantile(sorted, 0.95).toFixed(1),
          "max ms": (sorted.at(-1) ?? Number.NaN).toFixed(1),
          "median ms, no wait": quantile(
            [...r.blockedFreeMs].sort((a, b) => a - b),
            0.5,
          ).toFixed(1),
          "target ms": targetMs.toFixed(1),
          "ms/step": r.msPerStep.toFixed(2),
          "ms/step, no saves": baseOf(r).toFixed(2),
          "inflation %": ((r.msPerStep / baseOf(r) - 1) * 100).toFixed(1),
          "inflation %, staging excluded": ((r.msPerStepUnblocked / baseOf(r) - 1) * 100).toFixed(1),
          "CPU ms/step (no saves)": `${r.cpuMsPerStep.toFixed(2)} (${baseStepOf(r).cpuMs.toFixed(2)})`,
          "CPU inflation %": cpuInflation(r).toFixed(1),
          "copy bound %": copyBound(r).toFixed(1),
          "waited for previous": r.waited,
          "RSS Δ MiB (10th − before)": ((r.rssTenth - r.rssBefore) / MiB).toFixed(1),
          "RSS Δ MiB (last − 10th)": ((r.rssLast - r.rssTenth) / MiB).toFixed(1),
          "buffers allocated": r.allocations,
          "loop s": r.seconds.toFixed(0),
        },
      };
    }),
  ];
  const ratios: Record<string, number> = {
    "staging ÷ memcpy bandwidth": bw.staging / memcpy,
    "staging ÷ contiguous memcpy bandwidth": bw.staging / bw.contiguous,
  };
  for (const r of runs) {
    const sorted = [...r.blockedMs].sort((a, b) => a - b);
    ratios[`${r.mode}: staging ÷ memcpy bandwidth (median)`] =
      stateBytes / 1e6 / quantile(sorted, 0.5) / memcpy;
    ratios[`${r.mode}: blocked (median) ÷ target`] = quantile(sorted, 0.5) / targetMs;
    ratios[`${r.mode}: step-time inflation %`] = (r.msPerStep / baseOf(r) - 1) * 100;
    ratios[`${r.mode}: step-time inflation %, staging excluded`] =
      (r.msPerStepUnblocked / baseOf(r) - 1) * 100;
    ratios[`${r.mode}: training thread's CPU time inflation %`] = cpuInflation(r);
    ratios[`${r.mode}: the copy's least share of the step time %`] = copyBound(r);
    ratios[`${r.mode}: RSS after last − after 10th, MiB`] = (r.rssLast - r.rssTenth) / MiB;
    // The process's own memory, less the file pages (its code) a loaded machine's reclaim evicts.
    ratios[`${r.mode}: RssAnon + RssShmem after last − after 10th, MiB`] =
      r.memory[2].RssAnon! + r.memory[2].RssShmem! - r.memory[1].RssAnon! - r.memory[1].RssShmem!;
  }
  report(
    "async-save",
    {
      stateMib: o.stateMib,
      tensors: o.tensors,
      stepMs: o.stepMs,
      every: o.every,
      saves: o.saves,
      staging: o.staging.join(","),
    },
    rows,
    ratios,
    [
      `loops without saves, before, between and after: ${baselines.map((b) => `${b.ms.toFixed(2)} (CPU ${b.cpuMs.toFixed(2)})`).join(", ")} ms/step`,
      'what bounds the inflation with staging "copy": the copy on the training thread (copy bound %: the state ÷ the staging bandwidth, per save interval); the rest (staging excluded) is the save thread\'s work competing for the cores and the memory bus',
      `state dicts held through the last reading: ${tensorsKept} tensors`,
      `GLIBC_TUNABLES=${process.env.GLIBC_TUNABLES ?? ""} (glibc's memcpy copies with non-temporal stores only above glibc.cpu.x86_non_temporal_threshold, so each tensor's copy reads its destination first)`,
      `target blocked time: state ÷ (0.5 × memcpy ${memcpy.toFixed(1)} GB/s) + 20 ms = ${targetMs.toFixed(1)} ms`,
      ...runs.flatMap((r) =>
        ["before", "10th", "last"].map(
          (at, i) => `${r.mode}, memory at rest ${at} (MiB): ${formatParts(r.memory[i]!)}`,
        ),
      ),
      'staging: "copy" saves tensors in ordinary memory (copied); "none" saves tensors in shared memory (not copied)',
    ],
  );
}
