import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { tempDir } from "../support/tmp.js";

const MiB = 1024 * 1024;
const CHILD = fileURLToPath(new URL("../support/async-save-growth-child.ts", import.meta.url));

interface Report {
  readonly tenth: { readonly rss: number; readonly arrayBuffers: number };
  readonly last: { readonly rss: number; readonly arrayBuffers: number };
  readonly allocations: number;
  readonly intact: boolean;
}

/** Runs test/support/async-save-growth-child.ts in a fresh Node process and returns its report. */
function runChild(args: readonly string[]): Promise<Report> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "--conditions=@dcpjs/source", CHILD, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
    });
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

describe("asyncSave over many saves", () => {
  it("200 asyncSaves of the same 4 MiB state: one staging buffer, and RSS after the 200th within 16 MiB of after the 10th", async () => {
    const report = await runChild([await tempDir(), "200"]);
    expect(report.intact).toBe(true);
    expect(report.allocations).toBe(1);
    const mib = (n: number) => Math.round(n / MiB);
    expect(Math.abs(mib(report.last.rss - report.tenth.rss))).toBeLessThanOrEqual(16);
    expect(Math.abs(mib(report.last.arrayBuffers - report.tenth.arrayBuffers))).toBeLessThanOrEqual(16);
  }, 120_000);
});
