import { describe, expect, it } from "vitest";
import { FIRST_TOUCH_MIN_BYTES, touchFirst } from "../../packages/http/src/first-touch.js";
import { nodeTransport } from "../../packages/http/src/node-transport.js";

/** Calls `touchFirst` until the worker (started by the first call) takes the read. */
async function touchedOnWorker(targets: readonly Uint8Array[]): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const touched = touchFirst(targets);
    if (touched !== undefined) return touched;
    if (Date.now() > deadline)
      throw new Error("Expected the first-touch worker to start within 10 s, got none");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("the first touch of a load's destinations on a worker thread (Node transport)", () => {
  it("is the Node transport's prepare step", () => {
    expect(nodeTransport.prepare).toBe(touchFirst);
  });

  it("maps the pages of shared destinations and leaves every value as it was", async () => {
    const buffer = new SharedArrayBuffer(3 * FIRST_TOUCH_MIN_BYTES + 4096);
    const whole = new Uint8Array(buffer);
    for (let i = 0; i < whole.length; i += 1) whole[i] = (i * 31 + 7) & 0xff;
    const expected = whole.slice();
    // two destinations of one read, neither page-aligned, and an empty one between them
    const targets = [
      new Uint8Array(buffer, 123, FIRST_TOUCH_MIN_BYTES + 5),
      new Uint8Array(buffer, 200, 0),
      new Uint8Array(buffer, FIRST_TOUCH_MIN_BYTES + 4000, 2 * FIRST_TOUCH_MIN_BYTES),
    ];
    await touchedOnWorker(targets);
    expect(Buffer.compare(Buffer.from(whole), Buffer.from(expected))).toBe(0);
    // a fresh (zero-filled) buffer stays zero
    const fresh = new Uint8Array(new SharedArrayBuffer(2 * FIRST_TOUCH_MIN_BYTES));
    await touchedOnWorker([fresh]);
    expect(fresh.every((b) => b === 0)).toBe(true);
  });

  it("hands nothing to the worker for ordinary memory or a small read", () => {
    expect(touchFirst([new Uint8Array(4 * FIRST_TOUCH_MIN_BYTES)])).toBeUndefined();
    expect(touchFirst([new Uint8Array(new SharedArrayBuffer(FIRST_TOUCH_MIN_BYTES - 1))])).toBeUndefined();
    expect(touchFirst([])).toBeUndefined();
  });
});
