// The one retry policy: every loop that tries an operation again (a ranged GET resumed, a verified
// GET, a reread on a checksum mismatch, a delete, a lock wait) goes through `retry`, which is
// p-retry's loop — `shouldRetry`, exponential backoff with jitter, an abortable pause — with the
// attempt count stated once by the caller.
import pRetry from "p-retry";
import { type CheckpointError, throwIfAborted } from "./errors.js";

/** How often and how patiently a failed operation is tried again. */
export interface RetryPolicy {
  /** Attempts in all, the first included (an integer ≥ 1; 1 means no retry). */
  readonly attempts: number;
  /** Pause before the second attempt (ms); it grows by `factor` each time. @default 100 */
  readonly minDelayMs?: number;
  /** The longest pause between two attempts (ms). @default 5000 */
  readonly maxDelayMs?: number;
  /** Growth of the pause per attempt. @default 2 */
  readonly factor?: number;
  /** Multiply each pause by a random factor in [1, 2) (p-retry's `randomize`), so ranks that fail together do not retry together. @default true */
  readonly jitter?: boolean;
}

/** {@link retry}'s options: the policy, which failures to retry, and the caller's signal. */
export interface RetryOptions extends RetryPolicy {
  /**
   * Whether this failure deserves another attempt. Called only while attempts remain, with the
   * failed attempt's number (1-based). A failure it refuses is thrown as it is.
   */
  readonly shouldRetry: (error: unknown, attempt: number) => boolean | Promise<boolean>;
  /** Called after a failure that will be retried, before the pause (to log, or to reset state). */
  readonly onRetry?: (error: unknown, attempt: number) => void | Promise<void>;
  /** Aborts the pause between attempts; the rejection is then the library's `ABORTED`. */
  readonly signal?: AbortSignal;
}

/** What p-retry is handed when an attempt throws something that is not an `Error`. */
class Thrown extends Error {
  constructor(readonly value: unknown) {
    super(String(value));
  }
}

const unwrap = (error: unknown): unknown => (error instanceof Thrown ? error.value : error);

/**
 * Runs `operation` until it succeeds, `shouldRetry` refuses a failure, or `attempts` are spent;
 * then rejects with the last failure, unchanged. Pauses between attempts back off exponentially
 * from `minDelayMs` to `maxDelayMs` with jitter, and end early when `signal` aborts.
 *
 * @param operation - one attempt; receives its number (1-based).
 * @param options - the {@link RetryPolicy}, `shouldRetry`, `onRetry` and `signal`.
 * @returns what the first successful attempt returned.
 * @throws the last attempt's error; a {@link CheckpointError} `ABORTED` (its cause the signal's
 *   reason) when the signal aborts before an attempt or during a pause. A `TypeError` that is not a network error is never retried (p-retry's rule:
 *   it is a bug, not a fault).
 */
export async function retry<T>(
  operation: (attempt: number) => Promise<T>,
  options: RetryOptions,
): Promise<T> {
  const { attempts, shouldRetry, onRetry, signal } = options;
  if (!Number.isInteger(attempts) || attempts < 1) {
    throw new RangeError(`Expected attempts to be an integer ≥ 1, got ${attempts}`);
  }
  throwIfAborted(signal);
  try {
    return await pRetry(
      async (attempt) => {
        try {
          return await operation(attempt);
        } catch (error) {
          throw error instanceof Error ? error : new Thrown(error);
        }
      },
      {
        retries: attempts - 1,
        minTimeout: options.minDelayMs ?? 100,
        maxTimeout: options.maxDelayMs ?? 5000,
        factor: options.factor ?? 2,
        randomize: options.jitter ?? true,
        // The pause keeps the process alive (no `unref`): a process whose only pending work is a
        // retry would otherwise exit in the middle of it, with code 0 and the promise unsettled.
        ...(signal ? { signal } : {}),
        shouldRetry: async ({ error, attemptNumber }) => {
          const again = await shouldRetry(unwrap(error), attemptNumber);
          if (again) await onRetry?.(unwrap(error), attemptNumber);
          return again;
        },
      },
    );
  } catch (error) {
    if (signal?.aborted && error === signal.reason) throwIfAborted(signal);
    throw unwrap(error);
  }
}
