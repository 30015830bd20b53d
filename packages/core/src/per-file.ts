import { setMaxListeners } from "node:events";
import pLimit from "p-limit";

/**
 * Runs `fn` for every input with at most `concurrency` at once, as a rank's per-file work:
 * the first failure aborts the others through the signal they receive (linked to the caller's),
 * and is thrown once all have settled, so no file is left mid-operation.
 *
 * @param inputs - one per file.
 * @param concurrency - files at once, ≥ 1.
 * @param signal - the caller's signal.
 * @param fn - the work for one input; receives the linked signal.
 * @returns the results, in input order.
 */
export async function forEachFile<T, R>(
  inputs: readonly T[],
  concurrency: number,
  signal: AbortSignal | undefined,
  fn: (input: T, index: number, signal: AbortSignal) => Promise<R>,
): Promise<R[]> {
  const limit = pLimit(concurrency);
  const controller = new AbortController();
  const linked = signal ? AbortSignal.any([signal, controller.signal]) : controller.signal;
  // Every concurrent request listens to this signal; that is expected, not a leak.
  setMaxListeners(0, linked);
  const settled = await Promise.allSettled(
    inputs.map((input, index) =>
      limit(async () => {
        try {
          return await fn(input, index, linked);
        } catch (error) {
          controller.abort(error);
          throw error;
        }
      }),
    ),
  );
  const failed = settled.find((s) => s.status === "rejected");
  if (failed) throw failed.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<R>).value);
}
