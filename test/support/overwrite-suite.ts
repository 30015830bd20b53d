import { load } from "@dcpjs/core";
import { describe, expect, it } from "vitest";
import { exited, spawnTs, waitForLine } from "./child.js";
import { seededTarget, whichSeed } from "./tensors.js";

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
  });
}
