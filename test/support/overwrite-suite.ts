import type { ChildProcess } from "node:child_process";
import {
  createLocalProcessGroups,
  emptyTensor,
  load,
  type ShardedTensor,
  type StateDict,
  shardTensor,
  type Tensor,
} from "@dcpjs/core";
import { describe, expect, it } from "vitest";
import { exited, spawnTs, waitForLine } from "./child.js";
import { SEEDED_TENSORS, sameTensor, seededState, seededTarget, whichSeed } from "./tensors.js";

/** A place to save checkpoints under test: a fresh target and a listing of what lies there. */
export interface OverwriteTarget {
  /** A fresh checkpoint path (folder or `s3://` URI). */
  fresh(): Promise<string>;
  /** The names of the files (keys) under a checkpoint path, relative to it. */
  list(path: string): Promise<string[]>;
}

const dataFiles = (names: string[]) => names.filter((n) => n.endsWith(".distcp"));

/** Loads the seeded state at `path` and returns which of `seeds` it is (undefined: none, or damaged). */
async function loadedSeed(path: string, seeds: readonly number[]): Promise<number | undefined> {
  const sd = seededTarget();
  await load(sd, { checkpointId: path });
  return whichSeed(sd, seeds);
}

/** Every stdout line of a child, as they come. */
function linesOf(child: ChildProcess): string[] {
  const lines: string[] = [];
  let buffered = "";
  child.stdout?.on("data", (d) => {
    buffered += String(d);
    const parts = buffered.split("\n");
    buffered = parts.pop()!;
    lines.push(...parts);
  });
  return lines;
}

/** Saves seed `seed` at `path` in a child process (a save-worker) and returns its last line. */
async function saveInChild(path: string, seed: number, holdMs = 0): Promise<string> {
  const child = spawnTs("./save-worker.ts", [path, String(seed), "true", String(holdMs)]);
  const line = await waitForLine(child, /^(committed|error)/);
  await exited(child);
  return line;
}

/**
 * Two in-process ranks load the seeded state resharded (each its half of every tensor's rows);
 * returns the seed both loaded whole, byte-exact, or undefined (a mix, or damaged).
 */
async function loadedSeedTwoRanks(path: string): Promise<number | undefined> {
  const groups = createLocalProcessGroups(2);
  const targets = groups.map((pg) => {
    const sd: StateDict = { seed: -1 };
    for (let i = 0; i < SEEDED_TENSORS; i++)
      sd[`w${i}`] = shardTensor(emptyTensor("float32", [256, 256]), { dim: 0, rank: pg.rank, worldSize: 2 });
    return sd;
  });
  await Promise.all(groups.map((pg, r) => load(targets[r]!, { checkpointId: path, processGroup: pg })));
  const seed = targets[0]!.seed as number;
  const want = seededState(seed);
  const exact = targets.every((sd, rank) => {
    if (sd.seed !== seed) return false;
    for (let i = 0; i < SEEDED_TENSORS; i++) {
      const full = shardTensor(want[`w${i}`] as Tensor, { dim: 0, rank, worldSize: 2 });
      const got = (sd[`w${i}`] as ShardedTensor).shards[0]!.tensor;
      if (!sameTensor(got, full.shards[0]!.tensor)) return false;
    }
    return true;
  });
  return exact ? seed : undefined;
}

/**
 * Crash-safe overwrite and exclusive create with real processes (test/support/save-worker.ts):
 * one suite for every backend.
 */
export function describeCrashSafeOverwrite(name: string, target: OverwriteTarget): void {
  describe(`crash-safe overwrite and exclusive create on ${name} (real processes)`, () => {
    it("SIGKILL at random points of an overwrite leaves the old or the new checkpoint, byte-exact", async () => {
      const path = await target.fresh();
      const first = spawnTs("./save-worker.ts", [path, "1", "true"]);
      expect(await waitForLine(first, /^(committed|error)/)).toBe("committed");
      const seeds = [1];
      for (let trial = 0; trial < 6; trial++) {
        const seed = 10 + trial;
        seeds.push(seed);
        const child = spawnTs("./save-worker.ts", [path, String(seed), "true"]);
        await waitForLine(child, /ready/);
        await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 150)));
        child.kill("SIGKILL");
        await exited(child);
        expect(await loadedSeed(path, seeds)).toBeDefined();
      }
    }, 120_000);

    it("of 4 processes racing with overwrite: false, exactly one commits; the others fail with CHECKPOINT_EXISTS and remove their files", async () => {
      for (let round = 0; round < 2; round++) {
        const path = await target.fresh();
        const seeds = [1, 2, 3, 4].map((s) => s + round * 10);
        const children = seeds.map((seed) => spawnTs("./save-worker.ts", [path, String(seed), "false"]));
        const lines = await Promise.all(children.map((c) => waitForLine(c, /^(committed|error)/)));
        await Promise.all(children.map(exited));
        expect(lines.filter((l) => l === "committed")).toHaveLength(1);
        expect(lines.filter((l) => l === "error CHECKPOINT_EXISTS")).toHaveLength(3);
        expect(await loadedSeed(path, [seeds[lines.indexOf("committed")]!])).toBeDefined();
        const names = await target.list(path);
        expect(dataFiles(names)).toHaveLength(1);
        expect(names.filter((n) => n.endsWith(".tmp"))).toEqual([]);
      }
    }, 120_000);

    it("100 loads racing back-to-back overwrites by another process each return the old or the new checkpoint, byte-exact, none failing", async () => {
      const path = await target.fresh();
      expect(await saveInChild(path, 1)).toBe("committed");
      const writer = spawnTs("./overwrite-loop.ts", [path, "100"]);
      const commits = linesOf(writer);
      try {
        await waitForLine(writer, /^committed/);
        const loaded: number[] = [];
        for (let i = 0; i < 100; i++) {
          const sd = seededTarget();
          await load(sd, { checkpointId: path });
          const seed = whichSeed(sd, [sd.seed as number]);
          expect(seed, `load ${i}`).toBeDefined();
          loaded.push(seed!);
        }
        // Two ranks of one process, resharding: both load the same checkpoint, never a mix.
        for (let i = 0; i < 20; i++) expect(await loadedSeedTwoRanks(path), `2-rank load ${i}`).toBeDefined();
        expect(new Set(loaded).size).toBeGreaterThan(1); // the loads did race the overwrites
        expect(commits.filter((l) => l.startsWith("error"))).toEqual([]);
      } finally {
        writer.kill("SIGKILL");
        await exited(writer);
      }
    }, 300_000);

    it("gc at grace 0 and 1 s racing 20 overwrites: every save commits and each round loads the new checkpoint byte-exact (never neither)", async () => {
      const path = await target.fresh();
      expect(await saveInChild(path, 1)).toBe("committed");
      let current = 1;
      for (let round = 0; round < 20; round++) {
        const graceMs = round % 2 === 0 ? 0 : 1000;
        const gc = spawnTs("./gc-loop.ts", [path, String(graceMs)]);
        const passes = linesOf(gc);
        await waitForLine(gc, /^pass/);
        const seed = 200 + round;
        // The save's finished files wait past the grace before its commit (slower ranks, a long save).
        const line = await saveInChild(path, seed, graceMs + 600);
        gc.kill("SIGKILL");
        await exited(gc);
        const loaded = await loadedSeed(path, [current, seed]);
        expect(loaded, `round ${round} (grace ${graceMs} ms): ${line}`).toBeDefined();
        expect(line, `round ${round}`).toBe("committed");
        expect(loaded).toBe(seed);
        expect(passes.filter((l) => l.startsWith("error"))).toEqual([]);
        current = seed;
      }
    }, 600_000);

    it("gc --keep-last 1 at grace 0 racing saves of new checkpoints never removes the newest committed one nor a save in flight", async () => {
      const run = await target.fresh();
      expect(await saveInChild(`${run}/step-0`, 300)).toBe("committed");
      const gc = spawnTs("./gc-loop.ts", [run, "0", "1"]);
      const passes = linesOf(gc);
      try {
        await waitForLine(gc, /^pass/);
        for (let step = 1; step <= 6; step++) {
          const line = await saveInChild(`${run}/step-${step}`, 300 + step, 600);
          expect(line, `step ${step}`).toBe("committed");
          expect(await loadedSeed(`${run}/step-${step}`, [300 + step]), `step ${step}`).toBe(300 + step);
        }
        expect(passes.filter((l) => l.startsWith("error"))).toEqual([]);
      } finally {
        gc.kill("SIGKILL");
        await exited(gc);
      }
    }, 300_000);
  });
}
