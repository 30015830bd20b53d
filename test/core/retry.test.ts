import { retry } from "@dcpjs/core/extend";
import { describe, expect, it } from "vitest";
import { exited, spawnTs, waitForLine } from "../support/child.js";

describe("retry, the one retry policy", () => {
  it("tries again while shouldRetry agrees, then returns the first success", async () => {
    const seen: number[] = [];
    const result = await retry(
      async (attempt) => {
        seen.push(attempt);
        if (attempt < 3) throw new Error(`fail ${attempt}`);
        return "ok";
      },
      { attempts: 5, minDelayMs: 1, shouldRetry: () => true },
    );
    expect(result).toBe("ok");
    expect(seen).toEqual([1, 2, 3]);
  });

  it("throws the last failure unchanged once the attempts are spent, calling onRetry between", async () => {
    const retried: number[] = [];
    const failure = retry(
      async (attempt) => {
        throw Object.assign(new Error(`fail ${attempt}`), { code: "IO_ERROR" });
      },
      { attempts: 3, minDelayMs: 1, shouldRetry: () => true, onRetry: (_e, n) => void retried.push(n) },
    );
    await expect(failure).rejects.toMatchObject({ message: "fail 3", code: "IO_ERROR" });
    expect(retried).toEqual([1, 2]);
  });

  it("throws at once what shouldRetry refuses, and a non-Error value as it was thrown", async () => {
    let calls = 0;
    await expect(
      retry(
        async () => {
          calls++;
          throw "not an error";
        },
        { attempts: 4, minDelayMs: 1, shouldRetry: (e) => e !== "not an error" },
      ),
    ).rejects.toBe("not an error");
    expect(calls).toBe(1);
  });

  it("ends the pause when the signal aborts, rejecting with ABORTED caused by its reason — before an attempt too", async () => {
    const controller = new AbortController();
    const reason = new Error("stop");
    const started = performance.now();
    const failure = retry(
      async () => {
        setTimeout(() => controller.abort(reason), 20);
        throw new Error("fail");
      },
      { attempts: 3, minDelayMs: 10_000, shouldRetry: () => true, signal: controller.signal },
    );
    await expect(failure).rejects.toMatchObject({ code: "ABORTED", cause: reason });
    expect(performance.now() - started).toBeLessThan(5_000);
    let calls = 0;
    const never = retry(async () => ++calls, {
      attempts: 2,
      shouldRetry: () => true,
      signal: controller.signal,
    });
    await expect(never).rejects.toMatchObject({ code: "ABORTED" });
    expect(calls).toBe(0);
  });

  it("refuses attempts below 1", async () => {
    await expect(retry(async () => 1, { attempts: 0, shouldRetry: () => true })).rejects.toThrow(
      "Expected attempts to be an integer ≥ 1, got 0",
    );
  });

  it("keeps the process alive while it pauses between attempts", async () => {
    const child = spawnTs("retry-alone-child.ts", []);
    await expect(waitForLine(child, /^ok$/)).resolves.toBe("ok");
    expect(await exited(child)).toBe("0");
  });
});
