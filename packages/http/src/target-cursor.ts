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
