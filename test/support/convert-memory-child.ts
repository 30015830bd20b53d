// A process that converts the checkpoint at argv[2] to argv[3] (format argv[4]) with a window of
// argv[5] bytes and prints, as JSON, the most `arrayBuffers` it held beyond what it held before,
// measured at the end of every batch (while the batch is still held) once everything let go has
// been collected — the main thread's heap and the worker threads' (which hold shared memory they
// were handed until they collect), three rounds, the least kept — so a conversion that kept earlier
// batches, or the whole state dict, shows them. Run with --expose-gc.

import { setImmediate as tick } from "node:timers/promises";
import { type ConvertFormat, convertCheckpoint } from "@dcpjs/core";
import { collectWorkerHeaps, releaseStaging } from "@dcpjs/core/testing";

const [src, dst, to, window] = process.argv.slice(2) as [string, string, ConvertFormat, string];
const gc = globalThis.gc;
if (!gc) throw new Error("Expected --expose-gc, got no gc function");
const settled = async () => {
  let least = Number.POSITIVE_INFINITY;
  for (let round = 0; round < 3; round++) {
    await collectWorkerHeaps();
    gc();
    await tick();
    least = Math.min(least, process.memoryUsage().arrayBuffers);
  }
  return least;
};
releaseStaging();
const before = await settled();
let most = 0;
const batches: number[] = [];
await convertCheckpoint(src, dst, {
  to,
  windowBytes: Number(window),
  onBatch: async (b) => {
    batches.push(b.bytes);
    const held = (await settled()) - before;
    if (process.env.DEBUG_CV) console.error(b.index, held);
    most = Math.max(most, held);
  },
});
console.log(JSON.stringify({ most, batches }));
