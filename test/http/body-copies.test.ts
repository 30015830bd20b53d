import { describe, expect, it } from "vitest";
import { FIRST_TOUCH_MIN_BYTES, touchFirst } from "../../packages/http/src/first-touch.js";
import { nodeTransport } from "../../packages/http/src/node-transport.js";
import { TargetCursor } from "../../packages/http/src/target-cursor.js";

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

describe("TargetCursor: body chunks into the destinations, byte-exact at any alignment", () => {
  it("copies chunks whose addresses disagree modulo 8 with shared and ordinary destinations alike", () => {
    const source = new Uint8Array(300_000);
    for (let i = 0; i < source.length; i += 1) source[i] = (i * 131 + 17) & 0xff;
    for (const shared of [true, false]) {
      for (const skew of [0, 1, 3, 7]) {
        const memory = shared
          ? new SharedArrayBuffer(source.length + 64)
          : new ArrayBuffer(source.length + 64);
        // three destinations back to back, starting at odd offsets of one buffer
        const sizes = [100_003, 70_001, source.length - 170_004];
        let at = 5;
        const targets = sizes.map((n) => {
          const t = new Uint8Array(memory, at, n);
          at += n + 3;
          return t;
        });
        const cursor = new TargetCursor(targets);
        // chunks as a socket hands them over: views at odd offsets of bigger buffers, some over 64 KiB
        let from = 0;
        for (const n of [65_536 - 211, 65_536, 1, 200_000, 300]) {
          const len = Math.min(n, source.length - from);
          if (len === 0) break;
          const carrier = new Uint8Array(len + 16);
          carrier.set(source.subarray(from, from + len), skew);
          cursor.write(carrier.subarray(skew, skew + len));
          from += len;
        }
        expect(cursor.done).toBe(source.length);
        const written = Buffer.concat(targets.map((t) => Buffer.from(t.buffer, t.byteOffset, t.byteLength)));
        expect(Buffer.compare(written, Buffer.from(source))).toBe(0);
      }
    }
  });
});
