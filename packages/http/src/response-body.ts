// Reading a response body into the caller's buffers: skipping what precedes the wanted bytes (a
// 200 to a ranged request), stopping after them, and dropping the rest of the body.

/** Fills a list of buffers back to back; `done` bytes so far (kept across resumed attempts). */
export class TargetCursor {
  /** Bytes written so far. */
  done = 0;
  #index = 0;
  #within = 0;

  /** @param targets - the buffers, in file order; their lengths add up to the bytes wanted. */
  constructor(readonly targets: readonly Uint8Array[]) {}

  /**
   * Copies `chunk` to where the last write ended.
   * @param chunk - the next bytes; no more than the buffers have room left for.
   */
  write(chunk: Uint8Array): void {
    let from = 0;
    while (from < chunk.byteLength) {
      const target = this.targets[this.#index]!;
      const n = Math.min(target.byteLength - this.#within, chunk.byteLength - from);
      target.set(chunk.subarray(from, from + n), this.#within);
      from += n;
      this.#within += n;
      this.done += n;
      if (this.#within === target.byteLength) {
        this.#index++;
        this.#within = 0;
        while (this.#index < this.targets.length && this.targets[this.#index]!.byteLength === 0)
          this.#index++;
      }
    }
  }
}

/**
 * Reads `want` bytes of a body after skipping `skip`, handing them to `sink`; cancels the rest.
 * @param response - the response whose body is read.
 * @param skip - bytes dropped first (the offset wanted, in a whole-file 200).
 * @param want - bytes handed to `sink`.
 * @param sink - takes each piece, in order.
 * @param touch - called on every piece received (resets the stall timer).
 * @param exact - the body should end right after `want` bytes: read it to its end so the
 *   connection is kept for the next request. @default false
 * @returns the bytes delivered (fewer than `want` when the body ended early).
 */
export async function pump(
  response: Response,
  skip: number,
  want: number,
  sink: (chunk: Uint8Array) => void,
  touch: () => void,
  exact = false,
): Promise<number> {
  if (want === 0 || response.body === null) {
    await response.body?.cancel().catch(() => {});
    return 0;
  }
  const reader = response.body.getReader();
  let delivered = 0;
  let ended = false;
  try {
    while (delivered < want) {
      const { done, value } = await reader.read();
      if (done) {
        ended = true;
        break;
      }
      touch();
      let chunk = value;
      if (skip > 0) {
        if (chunk.byteLength <= skip) {
          skip -= chunk.byteLength;
          continue;
        }
        chunk = chunk.subarray(skip);
        skip = 0;
      }
      if (chunk.byteLength > want - delivered) chunk = chunk.subarray(0, want - delivered);
      sink(chunk);
      delivered += chunk.byteLength;
    }
    // A body that should end here is read to its end, so its connection is kept for the next request.
    if (exact && !ended && delivered === want) ended = (await reader.read()).done === true;
  } finally {
    if (!ended) await reader.cancel().catch(() => {});
  }
  return delivered;
}
