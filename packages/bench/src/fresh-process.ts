import { spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Row } from "./report.js";

// Fresh-process, fresh-memory rows (issue #28, "measure as users run it"): every rep of every
// contender is a new process that imports what it measures, allocates its destination (or fills
// its source), runs the operation once and reports that span; the process's whole wall time —
// start, imports, allocation, span, exit — is measured here, from spawn to exit.

const NODE_PEER = fileURLToPath(new URL("../peers/fresh_node.mjs", import.meta.url));
const RAW_PEER = fileURLToPath(new URL("../peers/fresh_raw.py", import.meta.url));
const TORCH_PEER = fileURLToPath(new URL("../peers/torch_dcp.py", import.meta.url));

/** What one fresh-process rep reports. */
export interface FreshRun {
  /** The operation's span as the process timed it (s). */
  readonly seconds: number;
  /** The process's whole wall time, spawn to exit (s). */
  readonly wall: number;
  /** The process's CPU time in the span (s). */
  readonly cpu: number;
}

/** One contender of a fresh-process row: its label and how to run one rep. */
export interface FreshContender {
  readonly label: string;
  readonly run: () => Promise<FreshRun>;
}

/** The files of a raw contender: one sequential stream per file, one fresh buffer per size (bytes). */
export type RawFiles = readonly { readonly path: string; readonly sizes: readonly number[] }[];

/** A state dict of float32 tensors as the fresh children build it: fqns and shapes. */
export interface FreshState {
  readonly keys: readonly string[];
  readonly shapes: readonly (readonly number[])[];
}

/**
 * Runs `command args` as a new process and parses the last JSON line it prints.
 *
 * @throws Error when it exits non-zero or prints no JSON line.
 */
function runFresh(
  command: string,
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<FreshRun> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(command, args, {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...env },
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    child.stderr.on("data", (d) => {
      err += d;
    });
    child.on("error", reject);
    child.on("close", (code) => {
      const wall = (performance.now() - t0) / 1000;
      const line = out
        .trim()
        .split("\n")
        .reverse()
        .find((l) => l.startsWith("{"));
      if (code !== 0 || !line) {
        reject(
          new Error(`Expected ${command} ${args.join(" ")} to exit 0 with JSON, got ${code}: ${err}${out}`),
        );
        return;
      }
      const r = JSON.parse(line) as { seconds: number; cpu?: number };
      resolve({ seconds: r.seconds, wall, cpu: r.cpu ?? Number.NaN });
    });
  });
}

/**
 * The environment that backs a Node process's large allocations with transparent huge pages where
 * the kernel's THP mode is `madvise` (glibc ≥ 2.35 then `madvise`s every large `malloc`/`calloc`
 * — a `SharedArrayBuffer`'s memory included): what `numpy.empty` does by itself. A fresh page is
 * then faulted in 2 MiB at a time (docs/benchmarks.md, "What a fresh process pays").
 */
export const HUGE_PAGES_ENV: Readonly<Record<string, string>> = { GLIBC_TUNABLES: "glibc.malloc.hugetlb=1" };

/** A Node contender's process: plain, or with {@link HUGE_PAGES_ENV}. */
export type NodeMemory = "plain" | "huge pages";

const memoryLabel = (memory: NodeMemory) => (memory === "plain" ? "" : ", huge pages");
const memoryEnv = (memory: NodeMemory) => (memory === "plain" ? {} : HUGE_PAGES_ENV);

let specs = 0;

/** Writes a child's spec next to the scratch data and returns its path. */
async function specFile(dir: string, spec: object): Promise<string> {
  const path = join(dir, `fresh-spec-${process.pid}-${specs++}.json`);
  await writeFile(path, JSON.stringify(spec));
  return path;
}

/**
 * The Node raw contender: `node:fs` streams into (load) or from (save) fresh
 * `Buffer.allocUnsafeSlow` memory, one stream per file (`peers/fresh_node.mjs`), in a plain
 * process or one with {@link HUGE_PAGES_ENV}.
 */
export async function rawNodeContender(
  dir: string,
  mode: "save" | "load",
  files: RawFiles,
  memory: NodeMemory = "plain",
): Promise<FreshContender> {
  const spec = await specFile(dir, { contender: "raw", mode, files });
  return {
    label: `raw node:fs${memoryLabel(memory)}`,
    run: () => runFresh(process.execPath, [NODE_PEER, spec], memoryEnv(memory)),
  };
}

/**
 * The Python raw contender: `readinto` into (load) or `write` + `fsync` from (save) fresh memory,
 * one thread per file (`peers/fresh_raw.py`): `numpy.empty` (pages untouched until the read, as a
 * fresh `SharedArrayBuffer`'s) or `bytearray` (zero-filled before the span, as `torch.zeros`).
 */
export async function rawPythonContender(
  python: string,
  dir: string,
  mode: "save" | "load",
  files: RawFiles,
  alloc: "numpy" | "bytearray",
): Promise<FreshContender> {
  const spec = await specFile(dir, { mode, files, alloc });
  return { label: `raw Python ${alloc}`, run: () => runFresh(python, [RAW_PEER, spec]) };
}

/**
 * The dcpjs contender: `save` or `load` of fresh `emptyTensor`s (built `@dcpjs/core`, no loader),
 * in a plain process or one with {@link HUGE_PAGES_ENV}.
 */
export async function dcpjsContender(
  dir: string,
  mode: "save" | "load",
  path: string,
  state: FreshState,
  threadCount: number,
  memory: NodeMemory = "plain",
): Promise<FreshContender> {
  const spec = await specFile(dir, { contender: "dcpjs", mode, path, threadCount, ...state });
  return {
    label: `dcpjs${memoryLabel(memory)}`,
    run: () => runFresh(process.execPath, [NODE_PEER, spec], memoryEnv(memory)),
  };
}

/** PyTorch DCP (`peers/torch_dcp.py`, which always runs in a fresh process) with these arguments. */
export function torchContender(label: string, python: string, args: readonly string[]): FreshContender {
  return { label, run: () => runFresh(python, [TORCH_PEER, ...args]) };
}

/** The best rep of each contender: the best span and, separately, the best whole-process wall. */
export interface FreshBest {
  readonly label: string;
  readonly seconds: number;
  readonly wall: number;
  readonly cpu: number;
}

/**
 * Runs every contender `reps` times, interleaved rep by rep, each rep a new process; `prepare`
 * runs before each (e.g. evicting the page cache).
 *
 * @returns the best span and the best process wall of each contender, in order.
 */
export async function runFreshContenders(
  contenders: readonly FreshContender[],
  reps: number,
  prepare: () => Promise<void> = async () => {},
): Promise<FreshBest[]> {
  const best = contenders.map((c) => ({
    label: c.label,
    seconds: Number.POSITIVE_INFINITY,
    wall: Number.POSITIVE_INFINITY,
    cpu: Number.NaN,
  }));
  for (let rep = 0; rep < reps; rep++) {
    for (const [i, c] of contenders.entries()) {
      await prepare();
      const r = await c.run();
      const b = best[i]!;
      if (r.seconds < b.seconds) {
        b.seconds = r.seconds;
        b.cpu = r.cpu;
      }
      b.wall = Math.min(b.wall, r.wall);
    }
  }
  return best;
}

/**
 * Report rows of fresh-process results: the span as the row's time, the process's whole wall
 * time and the span's CPU time beside it.
 *
 * @param what - what was done, e.g. "load (cold)".
 * @param bytes - bytes moved.
 */
export function freshRows(results: readonly FreshBest[], what: string, bytes: number): Row[] {
  return results.map((r) => ({
    name: `fresh process: ${r.label} ${what}`,
    bytes,
    seconds: r.seconds,
    extra: { "process wall s": r.wall.toFixed(3), "span CPU s": r.cpu.toFixed(3) },
  }));
}

/**
 * Ratios of the result labelled `ours` against the others (those labelled in `against`, when
 * given): span against span and process wall against process wall (> 1: ours faster).
 */
export function freshRatios(
  results: readonly FreshBest[],
  what: string,
  ours = "dcpjs",
  against?: readonly string[],
): Record<string, number> {
  const us = results.find((r) => r.label === ours);
  if (!us) return {};
  const ratios: Record<string, number> = {};
  for (const r of results) {
    if (r === us || (against && !against.includes(r.label))) continue;
    ratios[`fresh ${ours} / ${r.label} ${what}`] = r.seconds / us.seconds;
    ratios[`fresh ${ours} / ${r.label} ${what}, process wall`] = r.wall / us.wall;
  }
  return ratios;
}
