import pLimit from "p-limit";
import { setMaxListeners } from "#platform";

/**
 * Runs `fn` for every input with at most `concurrency` at once, as a rank's per-file work:
 * the first failure in time aborts the others through the signal they receive (linked to the
 * caller's), and is the one thrown — never a sibling's abort — once all have settled, so no file
 * is left mid-operation.
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
  // The first failure in time is the root cause; the others are mostly its aborts.
  let first: { reason: unknown } | undefined;
  const settled = await Promise.allSettled(
    inputs.map((input, index) =>
      limit(async () => {
        try {
          return await fn(input, index, linked);
        } catch (error) {
          first ??= { reason: error };
          controller.abort(error);
          throw error;
        }
      }),
    ),
  );
  if (first) throw first.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<R>).value);
}
