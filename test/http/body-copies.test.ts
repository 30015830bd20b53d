import { describe, expect, it } from "vitest";
import { TargetCursor } from "../../packages/http/src/target-cursor.js";

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
