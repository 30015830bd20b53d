import { setTimeout as sleep } from "node:timers/promises";
import { WORKER_COLLECT_MS } from "@dcpjs/core/testing";

/** A process's memory (bytes), as `process.memoryUsage()` reports it. */
export interface MemoryReading {
  readonly rss: number;
  readonly arrayBuffers: number;
}

/**
 * RSS and arrayBuffers (bytes) at rest: once the workers' idle collection has run, the least of
 * five readings 100 ms apart, each after a collection of this thread (V8 frees array buffers'
 * memory on a background thread after a collection, so one reading may come too early).
 *
 * @param collect - this thread's garbage collector (`gc`).
 */
export async function memoryAtRest(collect: () => void): Promise<MemoryReading> {
  await sleep(WORKER_COLLECT_MS * 2);
  let rss = Number.POSITIVE_INFINITY;
  let arrayBuffers = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 5; i++) {
    collect();
    await sleep(100);
    const m = process.memoryUsage();
    rss = Math.min(rss, m.rss);
    arrayBuffers = Math.min(arrayBuffers, m.arrayBuffers);
  }
  return { rss, arrayBuffers };
}
