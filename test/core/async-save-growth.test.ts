import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { runChildReport } from "../support/child-report.js";
import { tempDir } from "../support/tmp.js";

const MiB = 1024 * 1024;
const CHILD = fileURLToPath(new URL("../support/async-save-growth-child.ts", import.meta.url));

interface Report {
  readonly tenth: { readonly rss: number; readonly arrayBuffers: number };
  readonly last: { readonly rss: number; readonly arrayBuffers: number };
  readonly allocations: number;
  readonly intact: boolean;
}

describe("asyncSave over many saves", () => {
  it("200 asyncSaves of the same 4 MiB state: one staging buffer, and RSS after the 200th within 16 MiB of after the 10th", async () => {
    const report = await runChildReport<Report>(CHILD, [await tempDir(), "200"]);
    expect(report.intact).toBe(true);
    expect(report.allocations).toBe(1);
    const mib = (n: number) => Math.round(n / MiB);
    expect(Math.abs(mib(report.last.rss - report.tenth.rss))).toBeLessThanOrEqual(16);
    expect(Math.abs(mib(report.last.arrayBuffers - report.tenth.arrayBuffers))).toBeLessThanOrEqual(16);
  }, 120_000);
});
