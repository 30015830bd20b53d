import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { emptyTensor, load, save } from "@dcpjs/core";
import { collectWorkerHeaps, WORKER_COLLECT_MS, workerThreadsRunning } from "@dcpjs/core/testing";
import { describe, expect, it } from "vitest";
import { runChildReport } from "../support/child-report.js";
import { tempDir } from "../support/tmp.js";

const MiB = 1024 * 1024;
const CHILD = fileURLToPath(new URL("../support/memory-growth-child.ts", import.meta.url));

interface Report {
  readonly tenth: { readonly rss: number; readonly arrayBuffers: number };
  readonly last: { readonly rss: number; readonly arrayBuffers: number };
  readonly tasks: number;
  readonly intact: boolean;
}

function expectNoGrowth(report: Report, rounds: number, rssMiB = 32): void {
  expect(report.intact).toBe(true);
  expect(report.tasks).toBeGreaterThanOrEqual(4 * rounds); // every save's and load's two CRCs, on workers
  const mib = (n: number) => Math.round(n / MiB);
  // Without the workers' collections: RSS +300 MiB after 200 rounds (+80 MiB after 60).
  expect(mib(report.last.arrayBuffers - report.tenth.arrayBuffers)).toBeLessThanOrEqual(32);
  expect(mib(report.last.rss - report.tenth.rss)).toBeLessThanOrEqual(rssMiB);
}

describe("the worker threads do not keep the shared memory they were handed", () => {
  it("200 saves and 200 loads of fresh tensors in one process: RSS and arrayBuffers stay within 32 MiB of the 10th round's", async () => {
    expectNoGrowth(
      await runChildReport<Report>(CHILD, [await tempDir(), "flag", "200"], ["--expose-gc"]),
      200,
    );
  });

  it("so too when the process has no --expose-gc (the workers take a collector of their own)", async () => {
    // Without the fix: arrayBuffers +76 MiB, RSS +80 MiB. This child cannot collect its own main
    // thread between rounds (no gc()), so its RSS also holds the main thread's garbage (+49 MiB
    // once in CI): the workers' memory is judged by arrayBuffers (≤ 32 MiB), RSS only for a leak.
    expectNoGrowth(await runChildReport<Report>(CHILD, [await tempDir(), "vm-gc", "60"]), 60, 96);
  });

  it("the workers collect without --expose-gc and leave the flag off for everything else", async () => {
    expect(typeof globalThis.gc).toBe("undefined"); // this test process runs without the flag
    const dir = await tempDir();
    const sd = { w: emptyTensor("float32", [512, 1024]) }; // 2 MiB: its CRC runs on a worker
    await save(sd, { checkpointId: dir });
    await load(sd, { checkpointId: dir });
    expect(workerThreadsRunning()).toBeGreaterThan(0);
    expect(await collectWorkerHeaps()).toBe(true);
    expect(runInNewContext("typeof gc")).toBe("undefined");
    expect(typeof globalThis.gc).toBe("undefined");
  });

  it("what a load and a save handed the workers is let go once the pool has been idle WORKER_COLLECT_MS", async () => {
    setFlagsFromString("--expose-gc"); // this thread's collector, as the workers take theirs
    const gc = runInNewContext("gc") as () => void;
    setFlagsFromString("--no-expose-gc");
    const arrayBuffers = () => {
      gc();
      return process.memoryUsage().arrayBuffers;
    };
    const dir = await tempDir();
    const fresh = () => ({
      a: emptyTensor("float32", [2048, 1024]), // 8 MiB each, 24 MiB in all: under one WORKER_GC_BYTES
      b: emptyTensor("float32", [2048, 1024]),
      c: emptyTensor("float32", [2048, 1024]),
    });
    await save(fresh(), { checkpointId: dir }); // the workers start, and collect when idle
    await sleep(WORKER_COLLECT_MS * 3);
    const before = arrayBuffers();
    await save(fresh(), { checkpointId: dir });
    await load(fresh(), { checkpointId: dir });
    // 48 MiB of tensors, dropped; poll (V8 frees array buffers on a background thread).
    let held = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 50 && held > 8 * MiB; i++) {
      await sleep(WORKER_COLLECT_MS);
      held = arrayBuffers() - before;
    }
    expect(Math.round(held / MiB)).toBeLessThanOrEqual(8); // without the idle collection: 24
  });
});
