// How the S3 backend tries an operation again: the one retry policy (core's `retry`), with the
// backend's backoff.
import { type RetryOptions, retry } from "@dcpjs/core/extend";

/** The first pause between two attempts of an S3 operation, before jitter (ms); it doubles per attempt. */
export const S3_RETRY_MIN_DELAY_MS = 50;
/** The longest pause between two attempts of an S3 operation (ms). */
export const S3_RETRY_MAX_DELAY_MS = 5_000;

/**
 * Core's `retry` for the S3 backend: pauses from {@link S3_RETRY_MIN_DELAY_MS} doubling to
 * {@link S3_RETRY_MAX_DELAY_MS}, each multiplied by a random factor in [1, 2), unless `options`
 * says otherwise; and when `options.signal` fires before an attempt or during a pause, the
 * rejection is the library's `ABORTED` (its cause the signal's reason), as every other abort.
 *
 * @param operation - one attempt; receives its number (1-based).
 * @param options - as core's `retry`.
 * @returns what the first successful attempt returned.
 * @throws the last attempt's error, unchanged; a `CheckpointError` `ABORTED` when the signal fired.
 */
export async function retryS3<T>(
  operation: (attempt: number) => Promise<T>,
  options: RetryOptions,
): Promise<T> {
  return retry(operation, {
    minDelayMs: S3_RETRY_MIN_DELAY_MS,
    maxDelayMs: S3_RETRY_MAX_DELAY_MS,
    ...options,
  });
}
