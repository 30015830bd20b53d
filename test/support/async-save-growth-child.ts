// A process that runs 200 `asyncSave`s (or as many as its second argument says) of the same
// 4 MiB state dict (a 1 MiB and a 3 MiB float32 tensor, in ordinary memory as a training
// process's are, and a step count), changing its tensors after each `staged` as training would,
// into a new checkpoint folder each time (the one two saves back is removed). It prints, as JSON,
// its RSS and `arrayBuffers` at rest after the 10th save and after the last, the staging pool's
// allocations, and whether the last checkpoint loads back the values of its staging time. It
// takes `gc` from a vm context, so the process runs without --expose-gc (which Worker execArgv
// refuses).

import { rm } from "node:fs/promises";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { asyncSave, emptyTensor, load, type Tensor } from "@dcpjs/core";
import { stagingPoolFor } from "@dcpjs/core/testing";
import { type MemoryReading, memoryAtRest } from "./memory-at-rest.js";

const [dir, rounds] = process.argv.slice(2) as [string, string | undefined];
setFlagsFromString("--expose-gc");
const collect = runInNewContext("gc") as () => void;
setFlagsFromString("--no-expose-gc");

const ROUNDS = Number(rounds ?? 200);
const SHAPES = { a: [256, 1024], b: [768, 1024] } as const;

function plainTensor(shape: readonly number[]): Tensor {
  return { dtype: "float32", shape: [...shape], data: new Float32Array(shape[0]! * shape[1]!) };
}

const sd = { a: plainTensor(SHAPES.a), b: plainTensor(SHAPES.b), step: 0 };
let tenth: MemoryReading | undefined;
for (let i = 1; i <= ROUNDS; i++) {
  (sd.a.data as Float32Array).fill(i);
  (sd.b.data as Float32Array).fill(-i);
  sd.step = i;
  const { staged, completed } = asyncSave(sd, { checkpointId: join(dir, `step-${i}`) });
  await staged;
  (sd.a.data as Float32Array).fill(0); // training goes on: the save keeps the values of `staged`
  await completed;
  if (i > 2) await rm(join(dir, `step-${i - 2}`), { recursive: true, force: true });
  if (i === 10) tenth = await memoryAtRest(collect);
}
const last = await memoryAtRest(collect);
const target = { a: emptyTensor("float32", SHAPES.a), b: emptyTensor("float32", SHAPES.b), step: 0 };
await load(target, { checkpointId: join(dir, `step-${ROUNDS}`) });
const a = target.a.data as Float32Array;
const b = target.b.data as Float32Array;
const intact =
  target.step === ROUNDS &&
  a[0] === ROUNDS &&
  a.at(-1) === ROUNDS &&
  b[0] === -ROUNDS &&
  b.at(-1) === -ROUNDS;
console.log(JSON.stringify({ tenth, last, allocations: stagingPoolFor(undefined).allocations, intact }));
