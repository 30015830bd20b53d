import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { runInNewContext } from "node:vm";
import { emptyTensor, load, save } from "@dcpjs/core";
import { collectWorkerHeaps, workerThreadsRunning } from "@dcpjs/core/extend";
import { describe, expect, it } from "vitest";
import { tempDir } from "../support/tmp.js";

const MiB = 1024 * 1024;
const CHILD = fileURLToPath(new URL("../support/memory-growth-child.ts", import.meta.url));

interface Report {
  readonly tenth: { readonly rss: number; readonly arrayBuffers: number };
  readonly last: { readonly rss: number; readonly arrayBuffers: number };
  readonly tasks: number;
  readonly intact: boolean;
}

/** Runs test/support/memory-growth-child.ts in a fresh Node process and returns its report. */
function runChild(nodeFlags: readonly string[], args: readonly string[]): Promise<Report> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [...nodeFlags, "--import", "tsx", "--conditions=@dcpjs/source", CHILD, ...args],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => {
      out += String(d);
    });
    child.stderr.on("data", (d) => {
      err += String(d);
    });
    child.once("error", reject);
    child.once("exit", (code, signal) => {
      const line = out.trim().split("\n").at(-1);
      if (code !== 0 || !line) reject(new Error(`child exited (${code ?? signal}): ${err}`));
      else resolve(JSON.parse(line) as Report);
    });
  });
}

function expectNoGrowth(report: Report, rounds: number): void {
  expect(report.intact).toBe(true);
  expect(report.tasks).toBeGreaterThanOrEqual(4 * rounds); // every save's and load's two CRCs, on workers
  const mib = (n: number) => Math.round(n / MiB);
  // Without the workers' collections: +500 MiB of each after 200 rounds.
  expect(mib(report.last.arrayBuffers - report.tenth.arrayBuffers)).toBeLessThanOrEqual(32);
  expect(mib(report.last.rss - report.tenth.rss)).toBeLessThanOrEqual(32);
}

describe("the worker threads do not keep the shared memory they were handed", () => {
  it("200 saves and 200 loads of fresh tensors in one process: RSS and arrayBuffers stay within 32 MiB of the 10th round's", async () => {
    expectNoGrowth(await runChild(["--expose-gc"], [await tempDir(), "flag", "200"]), 200);
  });

  it("so too when the process has no --expose-gc (the workers take a collector of their own)", async () => {
    expectNoGrowth(await runChild([], [await tempDir(), "vm-gc", "60"]), 60); // without the fix: +150 MiB
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
});
