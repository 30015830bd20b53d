/** Bytes of the scratch buffer a misaligned copy into shared memory goes through (a multiple of 8). */
const SCRATCH_BYTES = 64 * 1024;

/** Copies shorter than this are made directly, aligned or not (bytes). */
const STAGED_MIN_BYTES = 512;

let scratch: Uint8Array | undefined;

/** Whether `bytes` lies in a `SharedArrayBuffer` (none exist in a page that is not cross-origin isolated). */
function isShared(bytes: Uint8Array): boolean {
  return typeof SharedArrayBuffer === "function" && bytes.buffer instanceof SharedArrayBuffer;
}

/**
 * Copies `chunk` into `target` at `at`. V8 copies into a `SharedArrayBuffer` word by word where
 * source and destination addresses agree modulo 8, and byte by byte where they do not — as a body
 * chunk and its place in a tensor mostly do not (the chunk starts where the socket read began, its
 * place where the response's headers happened to end). So such a copy goes through a small
 * non-shared scratch buffer, at the destination's offset modulo 8: an ordinary copy there, then an
 * aligned one into the shared memory.
 */
function copyInto(target: Uint8Array, at: number, chunk: Uint8Array): void {
  if (chunk.byteLength < STAGED_MIN_BYTES || ((chunk.byteOffset - target.byteOffset - at) & 7) === 0) {
    target.set(chunk, at);
    return;
  }
  if (!isShared(target)) {
    target.set(chunk, at);
    return;
  }
  scratch ??= new Uint8Array(SCRATCH_BYTES + 8);
  const shift = (target.byteOffset + at) & 7;
  for (let from = 0; from < chunk.byteLength; from += SCRATCH_BYTES) {
    const part = chunk.subarray(from, from + SCRATCH_BYTES);
    scratch.set(part, shift);
    target.set(scratch.subarray(shift, shift + part.byteLength), at + from);
  }
}

/** Fills a list of buffers back to back; `done` bytes so far (kept across resumed attempts). */
export class TargetCursor {
  /** Bytes written so far. */
  done = 0;
  #index = 0;
  #within = 0;

  /** @param targets - the buffers, in file order; their lengths add up to the bytes wanted. */
  constructor(readonly targets: readonly Uint8Array[]) {}

  /**
   * Copies `chunk` to where the last write ended (into shared memory through an aligning scratch
   * buffer where its addresses disagree modulo 8, see `copyInto`).
   * @param chunk - the next bytes; no more than the buffers have room left for.
   */
  write(chunk: Uint8Array): void {
    let from = 0;
    while (from < chunk.byteLength) {
      const target = this.targets[this.#index]!;
      const n = Math.min(target.byteLength - this.#within, chunk.byteLength - from);
      copyInto(target, this.#within, n === chunk.byteLength ? chunk : chunk.subarray(from, from + n));
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
