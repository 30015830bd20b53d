/**
 * Runs async calls one after another in call order: S3 readers keep a position in one response
 * stream, so concurrent `read` calls (a reader reading ahead) must not interleave.
 */
export class Serialized {
  #tail: Promise<unknown> = Promise.resolve();

  /**
   * Runs `fn` after every call queued before it has settled.
   * @param fn - the call.
   */
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(fn, fn);
    this.#tail = result.catch(() => {});
    return result;
  }
}
