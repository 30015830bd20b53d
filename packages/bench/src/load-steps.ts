import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { PerformanceObserver } from "node:perf_hooks";
import {
  DefaultLoadPlanner,
  emptyTensor,
  FileSystemReader,
  FileSystemWriter,
  load,
  type Metadata,
  type StateDict,
  save,
  type Tensor,
} from "@dcpjs/core";
import type { LoadPlan, LoadPlanner } from "@dcpjs/core/extend";
import { type Row, report } from "./report.js";

/** Options of {@link loadSteps}. */
export interface LoadStepsParams {
  /** Float32 tensors saved and loaded. */
  readonly items: number;
  /** Bytes of each (a multiple of 4). */
  readonly itemBytes: number;
  /** Loads measured (best of N, step by step). */
  readonly reps: number;
  /** Scratch folder. */
  readonly dir: string;
}

/** The steps of one `load`, in the order they run, as the engine names them. */
const STEPS = ["readMetadata", "setUpPlanner", "createLocalPlan", "prepareGlobalPlan", "readData"] as const;
type Step = (typeof STEPS)[number];

/** When each step of the load being measured ran: [start, end) in `performance.now()` ms. */
let spans: Partial<Record<Step, [number, number]>> = {};

/** Runs `fn` as `step`, recording its span (for an async step: until it settles). */
function timedStep<R>(step: Step, fn: () => R): R {
  const start = performance.now();
  const end = () => {
    spans[step] = [start, performance.now()];
  };
  const result = fn();
  if (result instanceof Promise) return result.finally(end) as R;
  end();
  return result;
}

/** The default reader, its steps timed. */
class StepReader extends FileSystemReader {
  override readMetadata(signal?: AbortSignal): Promise<Metadata> {
    return timedStep("readMetadata", () => super.readMetadata(signal));
  }
  override prepareGlobalPlan(plans: LoadPlan[]): LoadPlan[] {
    return timedStep("prepareGlobalPlan", () => super.prepareGlobalPlan(plans));
  }
  override readData(plan: LoadPlan, planner: LoadPlanner, signal?: AbortSignal): Promise<void> {
    return timedStep("readData", () => super.readData(plan, planner, signal));
  }
}

/** The default planner, its steps timed. */
class StepPlanner extends DefaultLoadPlanner {
  override setUpPlanner(stateDict: StateDict, metadata: Metadata, isCoordinator: boolean): void {
    timedStep("setUpPlanner", () => super.setUpPlanner(stateDict, metadata, isCoordinator));
  }
  override createLocalPlan(): LoadPlan {
    return timedStep("createLocalPlan", () => super.createLocalPlan());
  }
}

/**
 * `load-steps`: where one rank's `load` of many small tensors spends its time, step by step —
 * reading and decoding `.metadata`, the planner's set-up and local plan, the reader's global plan
 * (what each item reads) and its reads (schedule, fetch, verify, deliver) — each with the garbage
 * collection that started in it (`PerformanceObserver` `gc` entries by start time), in µs per item.
 * `items` float32 tensors of `itemBytes`, saved once to one file, then loaded `reps` times into
 * fresh `emptyTensor` destinations (allocated outside the timed span, as `many-small` does); each
 * step's best. A sweep over `items` shows which step grows faster than linearly (issue #28).
 */
export async function loadSteps(p: LoadStepsParams): Promise<void> {
  const elements = Math.max(1, Math.floor(p.itemBytes / 4));
  const ckpt = join(p.dir, "load-steps");
  await rm(p.dir, { recursive: true, force: true });
  await mkdir(p.dir, { recursive: true });
  const keys = Array.from({ length: p.items }, (_, i) => `layers.${i}.w`);
  {
    const sd: Record<string, Tensor> = {};
    keys.forEach((k, i) => {
      sd[k] = { dtype: "float32", shape: [elements], data: new Float32Array(elements).fill(i + 0.5) };
    });
    await save(sd, { storageWriter: new FileSystemWriter({ path: ckpt }) });
  }
  const collections: [number, number][] = [];
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) collections.push([e.startTime, e.duration]);
  });
  observer.observe({ entryTypes: ["gc"] });
  const best = { total: Infinity, gc: Infinity } as Record<Step | "total" | "gc", number>;
  const bestGc = {} as Record<Step, number>;
  for (const step of STEPS) {
    best[step] = Infinity;
    bestGc[step] = Infinity;
  }
  for (let rep = 0; rep < p.reps; rep++) {
    const target = Object.fromEntries(keys.map((k) => [k, emptyTensor("float32", [elements])]));
    spans = {};
    collections.length = 0;
    const t0 = performance.now();
    await load(target, { storageReader: new StepReader({ path: ckpt }), planner: new StepPlanner() });
    const t1 = performance.now();
    await new Promise((resolve) => setTimeout(resolve, 20)); // the last gc entries arrive late
    const last = target[keys.at(-1)!]!.data as Float32Array;
    if (last[0] !== p.items - 1 + 0.5) throw new Error(`Expected ${p.items - 0.5}, got ${last[0]}`);
    const gcIn = (from: number, to: number) =>
      collections.reduce((ms, [start, duration]) => (start >= from && start < to ? ms + duration : ms), 0);
    best.total = Math.min(best.total, t1 - t0);
    best.gc = Math.min(best.gc, gcIn(t0, t1));
    for (const step of STEPS) {
      const span = spans[step];
      if (!span) continue;
      best[step] = Math.min(best[step], span[1] - span[0]);
      bestGc[step] = Math.min(bestGc[step], gcIn(span[0], span[1]));
    }
  }
  observer.disconnect();
  const perItem = (ms: number) => (ms * 1000) / p.items;
  const rows: Row[] = STEPS.map((step) => ({
    name: step,
    bytes: 0,
    seconds: best[step] / 1000,
    extra: { "µs/item": perItem(best[step]).toFixed(2), "GC µs/item": perItem(bestGc[step]).toFixed(2) },
  }));
  rows.push({
    name: "whole load",
    bytes: p.items * elements * 4,
    seconds: best.total / 1000,
    extra: { "µs/item": perItem(best.total).toFixed(2), "GC µs/item": perItem(best.gc).toFixed(2) },
  });
  const ratios: Record<string, number> = {
    "load µs/item": perItem(best.total),
    "GC µs/item": perItem(best.gc),
  };
  for (const step of STEPS) ratios[`${step} µs/item`] = perItem(best[step]);
  report("load-steps", { items: p.items, itemBytes: p.itemBytes, reps: p.reps }, rows, ratios, [
    "each step's best of the reps (not one rep's), so the steps need not add up to the whole load",
    "GC: collections that started within the step; the whole load's includes those between steps",
  ]);
  await rm(p.dir, { recursive: true, force: true });
}
