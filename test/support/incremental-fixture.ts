// Incremental checkpoints built by hand for the reference-aware operations' tests: two ordinary
// saves, then the second's `.metadata` rewritten so that some items reference the first's files
// (`StorageInfo.baseCheckpoint`), as an incremental save records unchanged items.

import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { emptyTensor, load, type StateDict, save, type Tensor } from "@dcpjs/core";
import { decodeMetadata, encodeMetadata } from "@dcpjs/core/testing";
import type { StorageInfo } from "../../packages/core/src/plan/metadata.js";
import { randomTensor, sameTensor, seededState, seededTarget } from "./tensors.js";

/** The fqns {@link saveIncremental} references by default: half of the seeded state's tensors. */
export const DEFAULT_REFERENCED: readonly string[] = ["w0", "w1", "w2", "w3", "w4", "w5", "w6", "w7"];

/**
 * Saves `seededState(seed)` at `run/name` and, when `base` is given, rewrites its `.metadata` so
 * that the items of the fqns `from` (default `w0`…`w7`) reference `base`'s files (flat: where
 * `base`'s own item references a checkpoint, that one) — the bytes the load then gets are the
 * base's for those fqns.
 *
 * @returns the checkpoint's path.
 */
export async function saveIncremental(
  run: string,
  name: string,
  seed: number,
  base?: { readonly name: string; readonly fqns?: readonly string[] },
): Promise<string> {
  const path = join(run, name);
  await save(seededState(seed), { checkpointId: path });
  if (!base) return path;
  const fqns = new Set(base.fqns ?? DEFAULT_REFERENCED);
  const theirs = decodeMetadata(await readFile(join(run, base.name, ".metadata")));
  const ours = decodeMetadata(await readFile(join(path, ".metadata")));
  const storageData = new Map<string, StorageInfo>();
  for (const [key, info] of ours.storageData) {
    const fqn = key.split("\u0000")[0]!;
    const b = theirs.storageData.get(key);
    storageData.set(key, fqns.has(fqn) && b ? { ...b, baseCheckpoint: b.baseCheckpoint ?? base.name } : info);
  }
  await writeFile(join(path, ".metadata"), encodeMetadata({ ...ours, storageData }));
  return path;
}

/**
 * Whether the checkpoint at `path` loads bit-exact as {@link saveIncremental} saved it: the fqns
 * it referenced as `baseSeed`'s state, the others (and the `seed` value, unless `tensorsOnly`) as
 * `seed`'s.
 */
export async function loadsAs(
  path: string,
  seed: number,
  baseSeed?: number,
  fqns: readonly string[] = DEFAULT_REFERENCED,
  options: { readonly tensorsOnly?: boolean } = {},
): Promise<boolean> {
  const sd = seededTarget();
  if (options.tensorsOnly) delete sd.seed; // a safetensors file holds tensors only
  await load(sd, { checkpointId: path });
  if (options.tensorsOnly) sd.seed = seed;
  const mine = seededState(seed);
  const theirs = baseSeed === undefined ? mine : seededState(baseSeed);
  return (
    sd.seed === seed &&
    Object.keys(mine).every(
      (k) => k === "seed" || sameTensor(sd[k] as Tensor, (fqns.includes(k) ? theirs : mine)[k] as Tensor),
    )
  );
}

/**
 * The state of step `step` of an incremental run: `w0`…`w7` frozen (step 0's bytes forever),
 * `w8`…`w11` changed every 4 steps, `w12`…`w15` changed every step, `seed` the step — so a save
 * with base step − 2 references step 0's files and, within a block of 4 steps, the base's.
 */
export function incrementalState(step: number): StateDict {
  const sd: StateDict = { seed: step };
  for (let i = 0; i < 16; i++) {
    const s = i < 8 ? 0 : i < 12 ? 1000 + Math.floor(step / 4) : 2000 + step;
    sd[`w${i}`] = randomTensor("float32", [64, 64], s * 100 + i);
  }
  return sd;
}

/** Whether the checkpoint at `path` loads bit-exact as `incrementalState(step)`. */
export async function loadsAsStep(path: string, step: number): Promise<boolean> {
  const want = incrementalState(step);
  const sd: StateDict = { seed: -1 };
  for (const [k, v] of Object.entries(want))
    if (k !== "seed") sd[k] = emptyTensor("float32", (v as Tensor).shape);
  await load(sd, { checkpointId: path });
  return (
    sd.seed === step &&
    Object.keys(want).every((k) => k === "seed" || sameTensor(sd[k] as Tensor, want[k] as Tensor))
  );
}
