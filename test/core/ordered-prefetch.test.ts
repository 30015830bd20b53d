import { prefetchInOrder } from "@dcpjs/core/extend";
import { describe, expect, it } from "vitest";

const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("prefetchInOrder, the one ordered read-ahead window", () => {
  it("yields in order with at most `ahead` fetches in flight", async () => {
    let inFlight = 0;
    let most = 0;
    const out: number[] = [];
    const fetch = async (n: number) => {
      most = Math.max(most, ++inFlight);
      await tick(n % 2 === 0 ? 5 : 1); // later items finish first sometimes
      inFlight--;
      return n * 10;
    };
    for await (const r of prefetchInOrder([1, 2, 3, 4, 5, 6, 7], fetch, 3)) out.push(r);
    expect(out).toEqual([10, 20, 30, 40, 50, 60, 70]);
    expect(most).toBe(3);
  });

  it("throws a failed fetch at its turn, after the earlier results, and settles the rest before returning", async () => {
    const settled: number[] = [];
    const out: number[] = [];
    const fetch = async (n: number) => {
      await tick(n === 2 ? 1 : 10);
      settled.push(n);
      if (n === 2 || n === 3) throw new Error(`fetch ${n} failed`);
      return n;
    };
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on("unhandledRejection", onUnhandled);
    try {
      await expect(
        (async () => {
          for await (const r of prefetchInOrder([1, 2, 3, 4], fetch, 3)) out.push(r);
        })(),
      ).rejects.toThrow("fetch 2 failed");
      await tick(30);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
    expect(out).toEqual([1]);
    expect(settled.sort()).toEqual([1, 2, 3, 4]); // 3 and 4 were in flight: settled, not abandoned
    expect(unhandled).toEqual([]);
  });

  it("stops fetching when the consumer breaks, and starts nothing beyond the window", async () => {
    const started: number[] = [];
    const fetch = async (n: number) => {
      started.push(n);
      await tick(1);
      return n;
    };
    for await (const r of prefetchInOrder([1, 2, 3, 4, 5, 6, 7, 8], fetch, 2)) if (r === 2) break;
    expect(started).toEqual([1, 2, 3, 4]);
  });

  it("refuses a window below 1", async () => {
    await expect(prefetchInOrder([1], async (n) => n, 0).next()).rejects.toThrow(
      "Expected ahead to be an integer ≥ 1, got 0",
    );
  });
});
