// What an HTTP failure means to dcpjs: the stable code a caller sees, and whether another attempt
// may bring the bytes (the retry policy's `shouldRetry`).
import { CheckpointError, type CheckpointErrorCode, NotFoundError } from "@dcpjs/core";
import { MAX_RETRY_AFTER_MS } from "./http-options.js";

/**
 * A failed HTTP attempt: a {@link CheckpointError} that also says whether to try again and, for a
 * 429/503 with `Retry-After`, how long the server asked to wait.
 */
export class HttpRequestError extends CheckpointError {
  /** Whether another attempt may succeed (5xx, 408, 429, resets, timeouts, broken bodies). */
  readonly retryable: boolean;
  /** The server's `Retry-After`, in ms (capped at {@link MAX_RETRY_AFTER_MS}), if it sent one. */
  readonly retryAfterMs: number | undefined;
  /** The HTTP status, when there was a response. */
  readonly status: number | undefined;

  /**
   * @param code - the stable code.
   * @param message - what was expected and what was found, naming the URL.
   * @param options - whether it is retryable, `Retry-After`, the status and the cause.
   */
  constructor(
    code: CheckpointErrorCode,
    message: string,
    options: { retryable: boolean; retryAfterMs?: number; status?: number; cause?: unknown },
  ) {
    super(code, message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "HttpRequestError";
    this.retryable = options.retryable;
    this.retryAfterMs = options.retryAfterMs;
    this.status = options.status;
  }
}

/**
 * A URL as messages show it: without its query string (a presigned URL's signature stays out of logs).
 * @param url - the URL.
 */
export function displayUrl(url: string): string {
  const q = url.indexOf("?");
  return q < 0 ? url : `${url.slice(0, q)}?…`;
}

/**
 * Parses `Retry-After`: delay-seconds or an HTTP date (RFC 9110 §10.2.3), capped at {@link MAX_RETRY_AFTER_MS}.
 * @param value - the header, if any.
 * @param now - the current time (ms since the epoch).
 * @returns the delay in ms, or undefined when absent or unreadable.
 */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (value === null || value.trim() === "") return undefined;
  const text = value.trim();
  const ms = /^\d+$/.test(text) ? Number(text) * 1000 : Date.parse(text) - now;
  if (!Number.isFinite(ms)) return undefined;
  return Math.min(Math.max(0, ms), MAX_RETRY_AFTER_MS);
}

/**
 * The error of a response whose status is not what was asked for: 404/410 → {@link NotFoundError};
 * 401/403 → `ACCESS_DENIED`; 412 → `SOURCE_CHANGED`; 416 → `TRUNCATED`; 408, 429 and 5xx →
 * retryable `IO_ERROR` (with `Retry-After`); other statuses → `IO_ERROR`, not retried.
 *
 * @param response - the response.
 * @param url - the file's URL (named in the message).
 * @param action - what was attempted, e.g. `read bytes 0-99 of`.
 */
export function statusError(
  response: Pick<Response, "status" | "statusText" | "headers">,
  url: string,
  action: string,
): CheckpointError {
  const { status } = response;
  const shown = displayUrl(url);
  if (status === 404 || status === 410) return new NotFoundError(shown);
  if (status === 401 || status === 403) {
    return new HttpRequestError(
      "ACCESS_DENIED",
      `Expected access to ${shown} (to ${action} it), got ${status} ${response.statusText}: pass a token (HF_TOKEN for hf://) or headers that may read it`,
      { retryable: false, status },
    );
  }
  if (status === 412) return sourceChanged(url, "the server refused If-Match (412)");
  if (status === 416) {
    return new HttpRequestError(
      "TRUNCATED",
      `Expected ${shown} to hold the bytes asked for (to ${action} it), got 416 Range Not Satisfiable`,
      { retryable: false, status },
    );
  }
  const retryable = status === 408 || status === 429 || status >= 500;
  const retryAfterMs =
    status === 429 || status === 503 ? parseRetryAfter(response.headers.get("retry-after")) : undefined;
  return new HttpRequestError(
    "IO_ERROR",
    `Expected ${shown} to answer (to ${action} it), got ${status} ${response.statusText}`,
    { retryable, status, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) },
  );
}

/**
 * The error of a file replaced while it was read: `SOURCE_CHANGED`, naming it. Never retried.
 * @param url - the file's URL.
 * @param detail - what differed.
 */
export function sourceChanged(url: string, detail: string): HttpRequestError {
  return new HttpRequestError(
    "SOURCE_CHANGED",
    `Expected ${displayUrl(url)} to stay the version first read while it was loaded, but it was replaced (${detail}); load again to read the new version`,
    { retryable: false, status: 412 },
  );
}

/**
 * Wraps what a request or a body read threw (a reset, a refused connection, a stalled body) as a
 * retryable `IO_ERROR` naming the URL; a {@link CheckpointError} passes through.
 * @param error - what was thrown.
 * @param url - the file's URL.
 * @param action - what was attempted.
 */
export function transportError(error: unknown, url: string, action: string): CheckpointError {
  if (error instanceof CheckpointError) return error;
  const cause = (error as { cause?: { code?: string; message?: string } })?.cause;
  const detail = [error instanceof Error ? error.message : String(error), cause?.code ?? cause?.message]
    .filter(Boolean)
    .join(": ");
  return new HttpRequestError("IO_ERROR", `Failed to ${action} ${displayUrl(url)}: ${detail}`, {
    retryable: true,
    cause: error,
  });
}
