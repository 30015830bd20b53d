// Reading a Node response body (node-transport.ts) into the caller's buffers: skipping what precedes the wanted bytes (a
// 200 to a ranged request), stopping after them, and dropping the rest of the body.
import type { Readable } from "node:stream";
import { BodyWindow } from "./body-window.js";

/**
 * Reads `want` bytes of a body after skipping `skip`, handing them to `sink` as they arrive;
 * closes the connection when the rest of the body is not wanted.
 * @param body - the response body (a Node stream, see `send`).
 * @param skip - bytes dropped first (the offset wanted, in a whole-file 200).
 * @param want - bytes handed to `sink`.
 * @param sink - takes each piece, in order.
 * @param touch - called on every piece received (resets the stall timer).
 * @param exact - the body should end right after `want` bytes: read it to its end so the
 *   connection is kept for the next request. @default false
 * @returns the bytes delivered (fewer than `want` when the body ended early).
 * @throws what the body's stream failed with; an `Error` when its connection closed before it ended.
 */
export function pump(
  body: Readable,
  skip: number,
  want: number,
  sink: (chunk: Uint8Array) => void,
  touch: () => void,
  exact = false,
): Promise<number> {
  if (want === 0) {
    body.destroy();
    return Promise.resolve(0);
  }
  // closed (an abort) before it was read: no event would come
  if (body.destroyed) return Promise.reject(new Error("the connection closed before the body was read"));
  return new Promise((resolve, reject) => {
    const wanted = new BodyWindow(skip, want);
    let settled = false;
    const finish = (error?: unknown) => {
      if (settled) return;
      settled = true;
      body.off("data", onData).off("end", onEnd).off("error", onError).off("close", onClose);
      if (error !== undefined) reject(error);
      else resolve(wanted.delivered);
    };
    const onData = (value: Buffer) => {
      touch();
      try {
        if (wanted.full) {
          // more than the body should hold: what was wanted is in, the rest is dropped
          finish();
          body.destroy();
          return;
        }
        const part = wanted.take(value);
        if (part.byteLength > 0) sink(part);
        // a body that should end here is read to its end, so its connection is kept for the next request
        if (wanted.full && !exact) {
          finish();
          body.destroy();
        }
      } catch (error) {
        finish(error);
        body.destroy();
      }
    };
    const onEnd = () => finish();
    const onError = (error: unknown) => finish(error);
    const onClose = () => finish(new Error("the connection closed before the body ended"));
    body.on("data", onData).on("end", onEnd).on("error", onError).on("close", onClose);
  });
}
