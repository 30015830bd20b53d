import { AimdLimiter, type AimdSlot } from "@dcpjs/s3";
import { isThrottle, resolveThrottleOptions, throttleDelayMs, throttleKey } from "@dcpjs/s3/testing";
import { describe, expect, it } from "vitest";

const take = (l: AimdLimiter, n: number): AimdSlot[] =>
  Array.from({ length: n }, () => {
    const s = l.tryAcquire();
    if (!s) throw new Error("expected a free slot");
    return s;
  });

describe("AimdLimiter (additive increase, multiplicative decrease)", () => {
  it("starts at its ceiling and grants no more than the limit", () => {
    const l = new AimdLimiter({ max: 4 });
    take(l, 4);
    expect(l.limit).toBe(4);
    expect(l.inFlight).toBe(4);
    expect(l.tryAcquire()).toBeUndefined();
  });

  it("halves once per window: throttles of requests sent before the decrease count once", () => {
    const l = new AimdLimiter({ max: 16 });
    for (const s of take(l, 8)) s.release("throttled");
    expect(l.limit).toBe(8);
    expect(l.decreases).toBe(1);
    expect(l.throttled).toBe(8);
    // A request sent after the decrease is throttled too: a new window, halved again.
    take(l, 1)[0]!.release("throttled");
    expect(l.limit).toBe(4);
    for (let i = 0; i < 5; i++) take(l, 1)[0]!.release("throttled");
    expect(l.limit).toBe(1); // the floor
    expect(l.lowest).toBe(1);
  });

  it("respects its floor", () => {
    const l = new AimdLimiter({ max: 16, min: 3 });
    for (let i = 0; i < 6; i++) take(l, 1)[0]!.release("throttled");
    expect(l.limit).toBe(3);
  });

  it("grows by one after a window of successes, up to the ceiling; other failures change nothing", () => {
    const l = new AimdLimiter({ max: 4 });
    take(l, 1)[0]!.release("throttled");
    take(l, 1)[0]!.release("throttled");
    expect(l.limit).toBe(1);
    take(l, 1)[0]!.release("success");
    expect(l.limit).toBe(2);
    take(l, 1)[0]!.release("other");
    expect(l.limit).toBe(2);
    for (const s of take(l, 2)) s.release("success");
    expect(l.limit).toBe(3);
    for (let i = 0; i < 20; i++) take(l, 1)[0]!.release("success");
    expect(l.limit).toBe(4);
  });

  it("a lowered limit holds new requests until enough in flight have finished, then serves them in order", async () => {
    const l = new AimdLimiter({ max: 4 });
    const slots = take(l, 4);
    slots[0]!.release("throttled"); // limit 2, 3 in flight
    const order: number[] = [];
    const waiters = [1, 2].map((n) =>
      l.acquire().then((s) => {
        order.push(n);
        return s;
      }),
    );
    expect(l.waiting).toBe(2);
    slots[1]!.release("other"); // 2 in flight: still full
    await Promise.resolve();
    expect(order).toEqual([]);
    slots[2]!.release("other"); // 1 in flight: one waiter
    const first = await waiters[0]!;
    expect(order).toEqual([1]);
    expect(l.waiting).toBe(1);
    slots[3]!.release("other");
    await waiters[1];
    expect(order).toEqual([1, 2]);
    expect(l.tryAcquire()).toBeUndefined();
    first.release("success");
    expect(l.tryAcquire()).toBeDefined();
  });

  it("a release counts once; an aborted wait leaves the queue with ABORTED", async () => {
    const l = new AimdLimiter({ max: 1 });
    const [s] = take(l, 1);
    const ac = new AbortController();
    const waiting = l.acquire(ac.signal);
    ac.abort(new Error("stop"));
    await expect(waiting).rejects.toMatchObject({ code: "ABORTED" });
    expect(l.waiting).toBe(0);
    s!.release("success");
    s!.release("success");
    expect(l.inFlight).toBe(0);
    await expect(l.acquire(ac.signal)).resolves.toBeDefined(); // free: no wait, the signal is not consulted
  });
});

describe("throttle backoff and options", () => {
  it("full jitter under an exponential ceiling, capped", () => {
    const o = { baseDelayMs: 50, maxDelayMs: 2000 };
    const top = () => 0.999999;
    expect(throttleDelayMs(1, o, top)).toBe(49);
    expect(throttleDelayMs(2, o, top)).toBe(99);
    expect(throttleDelayMs(4, o, top)).toBe(399);
    expect(throttleDelayMs(10, o, top)).toBe(1999);
    expect(throttleDelayMs(1000, o, top)).toBe(1999);
    expect(throttleDelayMs(5, o, () => 0)).toBe(0);
  });

  it("defaults, and out-of-range values refused with INVALID_ARGUMENT", () => {
    expect(resolveThrottleOptions({}, 8)).toEqual({
      maxConcurrency: 8,
      minConcurrency: 1,
      baseDelayMs: 50,
      maxDelayMs: 2000,
      timeoutMs: 120_000,
    });
    expect(() => resolveThrottleOptions({ minConcurrency: 9 }, 8)).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT" }),
    );
    expect(() => resolveThrottleOptions({ timeoutMs: 0 })).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT" }),
    );
    expect(() => new AimdLimiter({ max: 0 })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });

  it("takes 503 (any code), 429 and throttling codes for throttles, nothing else", () => {
    expect(isThrottle({ name: "SlowDown", $metadata: { httpStatusCode: 503 } })).toBe(true);
    expect(isThrottle({ name: "ServiceUnavailable", $metadata: { httpStatusCode: 503 } })).toBe(true);
    expect(isThrottle({ name: "TooManyRequests", $metadata: { httpStatusCode: 429 } })).toBe(true);
    expect(isThrottle({ name: "SlowDown" })).toBe(true);
    expect(isThrottle({ name: "InternalError", $metadata: { httpStatusCode: 500 } })).toBe(false);
    expect(isThrottle(Object.assign(new Error("reset"), { code: "ECONNRESET" }))).toBe(false);
    expect(isThrottle(undefined)).toBe(false);
  });

  it("keys limiters by bucket and the key's prefix", () => {
    expect(throttleKey("b", "run/ckpt/__0_0.distcp")).toBe("b/run/ckpt/");
    expect(throttleKey("b", "top")).toBe("b/");
    expect(throttleKey("b", undefined)).toBe("b/");
  });
});
