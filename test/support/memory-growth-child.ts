// A process that saves and loads, 200 times each (or as many as its third argument says), a state
// dict of 1 MiB and 2 MiB tensors in shared memory — fresh tensors every time, as a serving or
// training process makes them; the loads take turns: into a state dict, `loadStateDictFromKeys`,
// and column strips on two in-process ranks (a shared chunk read into a staging buffer, then
// strips copied out of it). Every CRC, and the 1 MiB strip copies, run on worker threads. It
// prints, as JSON, its RSS and `arrayBuffers` at rest after the 10th round and after the last (at
// rest: the main thread collected, and the workers have had their idle collection), the worker
// tasks run, and whether every load read back what was saved. Run with --expose-gc (second
// argument "flag"); with "vm-gc" instead, it takes `gc` from a vm context the way a library must
// (the process flag stays off, so the workers must collect without it).

import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { emptyTensor, load, loadStateDictFromKeys, type ShardedTensor, save, type Tensor } from "@dcpjs/core";
import { workerTasksRun } from "@dcpjs/core/testing";
import { type MemoryReading, memoryAtRest } from "./memory-at-rest.js";
import { allRanks } from "./ranks.js";

const [dir, how, rounds] = process.argv.slice(2) as [string, string | undefined, string | undefined];
let gc = globalThis.gc;
if (how === "vm-gc") {
  setFlagsFromString("--expose-gc");
  gc = runInNewContext("gc") as typeof gc;
  setFlagsFromString("--no-expose-gc");
}
if (!gc) throw new Error("Expected a gc function (--expose-gc or vm-gc), got none");
const collect = gc;

const ROUNDS = Number(rounds ?? 200);
const SHAPES = { a: [256, 1024], b: [512, 1024] } as const; // 1 MiB and 2 MiB of float32

/** What round `round` saves in every element of tensor `key`. */
function savedValue(key: string, round: number): number {
  return key === "a" ? round : -round;
}

function stateDict(fill?: number): Record<string, Tensor> {
  const sd: Record<string, Tensor> = {};
  for (const [k, shape] of Object.entries(SHAPES)) {
    const t = emptyTensor("float32", [...shape]);
    if (fill !== undefined) (t.data as Float32Array).fill(savedValue(k, fill));
    sd[k] = t;
  }
  return sd;
}

/** Rank `rank` of 2's column strip of every tensor, in fresh shared memory. */
function columns(rank: number): Record<string, ShardedTensor> {
  const sd: Record<string, ShardedTensor> = {};
  for (const [k, [rows, cols]] of Object.entries(SHAPES)) {
    const tensor = emptyTensor("float32", [rows, cols / 2]);
    sd[k] = { dtype: "float32", shape: [rows, cols], shards: [{ offsets: [0, (rank * cols) / 2], tensor }] };
  }
  return sd;
}

/** The tensors a round's load filled, by key: a state dict's, or both ranks' strips. */
async function loadRound(i: number): Promise<[string, Tensor][]> {
  if (i % 3 === 1) {
    const sd = stateDict();
    await load(sd, { checkpointId: dir });
    return Object.entries(sd);
  }
  if (i % 3 === 2)
    return Object.entries(await loadStateDictFromKeys({ checkpointId: dir })) as [string, Tensor][];
  const strips = await allRanks(2, async (pg) => {
    const sd = columns(pg.rank);
    await load(sd, { checkpointId: dir, processGroup: pg });
    return sd;
  });
  return strips.flatMap((sd) =>
    Object.entries(sd).map(([k, t]): [string, Tensor] => [k, t.shards[0]!.tensor]),
  );
}

let intact = true;
let tenth: MemoryReading | undefined;
for (let i = 1; i <= ROUNDS; i++) {
  await save(stateDict(i), { checkpointId: dir });
  const loaded = await loadRound(i);
  if (loaded.length !== 2 * (i % 3 === 0 ? 2 : 1)) intact = false;
  for (const [k, t] of loaded) {
    const data = t.data as Float32Array;
    if (data[0] !== savedValue(k, i) || data[data.length - 1] !== savedValue(k, i)) intact = false;
  }
  collect(); // as a process that collects after each round would: what is left is held, not late
  if (i === 10) tenth = await memoryAtRest(collect);
}
const last = await memoryAtRest(collect);
console.log(
  JSON.stringify({
    tenth,
    last,
    tasks: workerTasksRun(),
    intact,
  }),
);
