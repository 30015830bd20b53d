import { setTimeout as sleep } from "node:timers/promises";
import type { S3Client } from "@aws-sdk/client-s3";
import { CheckpointError } from "@dcpjs/core";
import { assertIntegerInRange } from "@dcpjs/core/extend";
import { s3ErrorInfo } from "./s3-errors.js";

/** Requests in flight per bucket and prefix before any throttling: the client's socket count. */
export const DEFAULT_THROTTLE_MAX_CONCURRENCY = 16;
/** The first pause after a throttled attempt (ms); it doubles with each attempt, with full jitter. */
export const DEFAULT_THROTTLE_BASE_DELAY_MS = 50;
/** The longest pause between two throttled attempts (ms). */
export const DEFAULT_THROTTLE_MAX_DELAY_MS = 2_000;
/** How long one request keeps retrying while S3 throttles it before it fails (ms). */
export const DEFAULT_THROTTLE_TIMEOUT_MS = 120_000;
/**
 * Limiters (bucket-and-prefix entries) a client keeps before it drops those that hold nothing
 * worth keeping — no request in flight or waiting, the limit back at its ceiling — oldest first:
 * a long-lived client writing to ever new prefixes does not grow without bound.
 */
export const THROTTLE_MAX_PREFIXES = 1024;

/**
 * How dcpjs answers S3 throttling (`503 SlowDown`, any 503, `429`), after AWS's guidance for S3
 * request rates ("reduce the request rate, retry with exponential backoff"): per bucket and key
 * prefix, an {@link AimdLimiter} caps the requests in flight — halved on a throttled attempt
 * (once per window), one more after each window of successes — and a throttled attempt is
 * retried after a pause with full jitter, until {@link ThrottleOptions.timeoutMs} has passed.
 */
export interface ThrottleOptions {
  /** Requests in flight per bucket and prefix when nothing is throttled (the ceiling). @default the client's `maxConcurrency` (16) */
  readonly maxConcurrency?: number;
  /** The floor the limit never goes below. @default 1 */
  readonly minConcurrency?: number;
  /** First pause after a throttled attempt, in ms; doubles per attempt, full jitter. @default 50 */
  readonly baseDelayMs?: number;
  /** Longest pause between throttled attempts, in ms. @default 2000 */
  readonly maxDelayMs?: number;
  /**
   * Milliseconds one request may keep being throttled, from its first attempt, before it fails
   * with a {@link ThrottledError} (code `THROTTLED`, not retried by any outer loop). @default 120000
   */
  readonly timeoutMs?: number;
}

/** {@link ThrottleOptions} resolved and validated. */
export interface ResolvedThrottleOptions {
  /** The limiter's ceiling and starting limit, per bucket and prefix. */
  readonly maxConcurrency: number;
  /** The limiter's floor. */
  readonly minConcurrency: number;
  /** First backoff ceiling, ms. */
  readonly baseDelayMs: number;
  /** Largest backoff ceiling, ms. */
  readonly maxDelayMs: number;
  /** How long one request may stay throttled, ms. */
  readonly timeoutMs: number;
}

/**
 * Resolves {@link ThrottleOptions} with their defaults.
 *
 * @param options - the options.
 * @param maxConcurrency - the default ceiling (the client's socket count).
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` for a concurrency below 1, a floor above the
 * ceiling, or a delay or timeout outside 0 ms–1 h (timeout: 1 ms–24 h).
 */
export function resolveThrottleOptions(
  options: ThrottleOptions = {},
  maxConcurrency = DEFAULT_THROTTLE_MAX_CONCURRENCY,
): ResolvedThrottleOptions {
  const r = {
    maxConcurrency: options.maxConcurrency ?? maxConcurrency,
    minConcurrency: options.minConcurrency ?? 1,
    baseDelayMs: options.baseDelayMs ?? DEFAULT_THROTTLE_BASE_DELAY_MS,
    maxDelayMs: options.maxDelayMs ?? DEFAULT_THROTTLE_MAX_DELAY_MS,
    timeoutMs: options.timeoutMs ?? DEFAULT_THROTTLE_TIMEOUT_MS,
  };
  assertIntegerInRange("throttle.maxConcurrency", r.maxConcurrency, 1, 100_000);
  assertIntegerInRange("throttle.minConcurrency", r.minConcurrency, 1, r.maxConcurrency);
  assertIntegerInRange("throttle.baseDelayMs", r.baseDelayMs, 0, 3_600_000);
  assertIntegerInRange("throttle.maxDelayMs", r.maxDelayMs, 0, 3_600_000);
  assertIntegerInRange("throttle.timeoutMs", r.timeoutMs, 1, 86_400_000);
  return r;
}

/** How a request holding an {@link AimdLimiter} slot ended. */
export type AimdOutcome = "success" | "throttled" | "other";

/** A place among the requests in flight; release it exactly once. */
export interface AimdSlot {
  /**
   * Gives the place back (a second call does nothing) and lets the first waiter in.
   *
   * @param outcome - how the request ended: `success` counts toward raising the limit by one,
   *   `throttled` halves it (once per window), `other` (a reset, a 500) changes neither.
   */
  release(outcome: AimdOutcome): void;
}

/** Options of {@link AimdLimiter}. */
export interface AimdLimiterOptions {
  /** The ceiling, and the starting limit. @default 16 */
  readonly max?: number;
  /** The floor. @default 1 */
  readonly min?: number;
}

/**
 * A concurrency limit that adapts like TCP's congestion window (additive increase,
 * multiplicative decrease): a throttled request halves the limit — once per window, so a burst of
 * throttles from requests sent before the last decrease counts once — and after `limit`
 * successes in a row the limit grows by one, up to the ceiling. Requests beyond the limit wait
 * (first come, first served). Pure: no timers, no I/O.
 */
export class AimdLimiter {
  readonly #max: number;
  readonly #min: number;
  #limit: number;
  #inFlight = 0;
  #successes = 0;
  /** Bumped at every decrease; a slot remembers the epoch it was granted in. */
  #epoch = 0;
  #lowest: number;
  #decreases = 0;
  #throttled = 0;
  readonly #waiting: { grant: (slot: AimdSlot) => void; reject: (e: unknown) => void }[] = [];

  /**
   * @param options - see {@link AimdLimiterOptions}.
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` when `max` < 1 or `min` outside 1–`max`.
   */
  constructor(options: AimdLimiterOptions = {}) {
    this.#max = options.max ?? DEFAULT_THROTTLE_MAX_CONCURRENCY;
    this.#min = options.min ?? 1;
    assertIntegerInRange("max", this.#max, 1, 100_000);
    assertIntegerInRange("min", this.#min, 1, this.#max);
    this.#limit = this.#max;
    this.#lowest = this.#max;
  }

  /** Requests allowed in flight now. */
  get limit(): number {
    return this.#limit;
  }
  /** Requests holding a slot. */
  get inFlight(): number {
    return this.#inFlight;
  }
  /** Requests waiting for a slot. */
  get waiting(): number {
    return this.#waiting.length;
  }
  /** The lowest limit so far. */
  get lowest(): number {
    return this.#lowest;
  }
  /** How many times the limit was lowered. */
  get decreases(): number {
    return this.#decreases;
  }
  /** Throttled outcomes reported. */
  get throttled(): number {
    return this.#throttled;
  }

  /** A slot now, or undefined when `limit` requests are in flight or others wait first. */
  tryAcquire(): AimdSlot | undefined {
    if (this.#waiting.length > 0 || this.#inFlight >= this.#limit) return undefined;
    return this.#grant();
  }

  /**
   * Waits for a slot.
   *
   * @param signal - stops waiting.
   * @throws {@link CheckpointError} `ABORTED` when `signal` fires first.
   */
  acquire(signal?: AbortSignal): Promise<AimdSlot> {
    const now = this.tryAcquire();
    if (now) return Promise.resolve(now);
    if (signal?.aborted) return Promise.reject(aborted(signal));
    return new Promise<AimdSlot>((resolve, reject) => {
      const onAbort = () => {
        const at = this.#waiting.indexOf(entry);
        if (at >= 0) this.#waiting.splice(at, 1);
        reject(aborted(signal!));
      };
      const entry = {
        grant: (slot: AimdSlot) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(slot);
        },
        reject,
      };
      this.#waiting.push(entry);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  #grant(): AimdSlot {
    this.#inFlight++;
    const epoch = this.#epoch;
    let released = false;
    return {
      release: (outcome) => {
        if (released) return;
        released = true;
        this.#inFlight--;
        this.#record(outcome, epoch);
        this.#wake();
      },
    };
  }

  #record(outcome: AimdOutcome, epoch: number): void {
    if (outcome === "success") {
      if (++this.#successes >= this.#limit) {
        this.#successes = 0;
        this.#limit = Math.min(this.#max, this.#limit + 1);
      }
    } else if (outcome === "throttled") {
      this.#throttled++;
      this.#successes = 0;
      if (epoch === this.#epoch) {
        this.#epoch++;
        this.#decreases++;
        this.#limit = Math.max(this.#min, Math.floor(this.#limit / 2));
        this.#lowest = Math.min(this.#lowest, this.#limit);
      }
    }
  }

  #wake(): void {
    while (this.#waiting.length > 0 && this.#inFlight < this.#limit)
      this.#waiting.shift()!.grant(this.#grant());
  }
}

function aborted(signal: AbortSignal): CheckpointError {
  return new CheckpointError("ABORTED", "Aborted while waiting for an S3 request slot", {
    cause: signal.reason,
  });
}

/**
 * The pause before retrying a throttled request: full jitter over an exponential ceiling,
 * `random() × min(maxDelayMs, baseDelayMs × 2^(attempt − 1))` (AWS's "exponential backoff and
 * jitter").
 *
 * @param attempt - throttled attempts so far, ≥ 1.
 * @param options - `baseDelayMs`, `maxDelayMs`.
 * @param random - a number in [0, 1). @default Math.random
 * @returns milliseconds.
 */
export function throttleDelayMs(
  attempt: number,
  options: Pick<ResolvedThrottleOptions, "baseDelayMs" | "maxDelayMs">,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(options.maxDelayMs, options.baseDelayMs * 2 ** Math.min(attempt - 1, 40));
  return Math.floor(random() * ceiling);
}

/**
 * Whether an SDK error is S3 asking for fewer requests: HTTP 429 or 503, or a throttling code
 * (`SlowDown`, `Throttling`, `RequestLimitExceeded`, …).
 *
 * @param error - what the SDK threw.
 */
export function isThrottle(error: unknown): boolean {
  const { name, status } = s3ErrorInfo(error);
  return (
    status === 503 ||
    status === 429 ||
    ["SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests"].includes(
      name,
    )
  );
}

/**
 * S3 kept throttling one request for longer than {@link ThrottleOptions.timeoutMs}: code
 * `THROTTLED` (its own, so that a retry policy keyed on `code` can tell "the store asks for
 * fewer requests" from a transport failure), which no outer retry loop repeats (the throttling
 * loop already waited its budget).
 */
export class ThrottledError extends CheckpointError {
  /**
   * @param message - what was throttled, how often, how long.
   * @param options - `cause`: a plain summary of the last response (not the SDK error, so that
   * the SDK's own retry does not take it for a transient fault and start over).
   */
  constructor(message: string, options?: { cause?: unknown }) {
    super("THROTTLED", message, options);
    this.name = "ThrottledError";
  }
}

/** The limiters of one client, by `bucket/prefix/`. */
export type ThrottleState = ReadonlyMap<string, AimdLimiter>;

const installed = new WeakMap<S3Client, Map<string, AimdLimiter>>();

/**
 * The key S3 scales request rates by: the bucket and the key up to its last `/` (a checkpoint's
 * folder, or a prefix strategy's prefix).
 *
 * @param bucket - the bucket.
 * @param key - the object key (or a listing's prefix).
 */
export function throttleKey(bucket: string | undefined, key: string | undefined): string {
  const k = key ?? "";
  return `${bucket ?? ""}/${k.slice(0, k.lastIndexOf("/") + 1)}`;
}

/**
 * The limiters a throttled client holds (one per bucket and prefix it sent to; beyond
 * {@link THROTTLE_MAX_PREFIXES}, idle ones at their ceiling are dropped), to observe: `limit`,
 * `lowest`, `decreases`, `throttled`.
 *
 * @param client - a client passed to {@link throttleS3Client} (or built by `createS3Client`).
 * @returns an empty map for a client without throttling.
 */
export function throttleState(client: S3Client): ThrottleState {
  return installed.get(client) ?? new Map();
}

interface ThrottleArgs {
  readonly input: { readonly Bucket?: string; readonly Key?: string; readonly Prefix?: string };
  readonly request?: { readonly body?: unknown };
}

/** What the middleware reads of the SDK's handler context. */
interface MiddlewareContext {
  readonly commandName?: string;
  readonly __smithy_context?: { readonly abortSignal?: AbortSignal };
}

/**
 * Drops, oldest first, the limiters that remember nothing a new one would not (no request in
 * flight or waiting, the limit at its ceiling) until fewer than {@link THROTTLE_MAX_PREFIXES}
 * remain or none is left to drop.
 */
function dropIdle(limiters: Map<string, AimdLimiter>, max: number): void {
  for (const [key, l] of limiters) {
    if (limiters.size < THROTTLE_MAX_PREFIXES) return;
    if (l.inFlight === 0 && l.waiting === 0 && l.limit === max) limiters.delete(key);
  }
}

/** A request body that can be sent again: none, a string, or bytes (not a stream). */
function replayable(body: unknown): boolean {
  return body === undefined || body === null || typeof body === "string" || body instanceof Uint8Array;
}

/**
 * Makes a client answer S3 throttling as {@link ThrottleOptions} describes, for every command
 * it sends (uploads' parts, ranged GETs, HEADs, the commit): a middleware inside the SDK's
 * retry loop takes a slot of the request's bucket-and-prefix {@link AimdLimiter} for every
 * attempt, and retries a throttled attempt itself (the SDK's own retries, whose throttling
 * backoff starts at 1 s and whose retry quota runs dry in a storm, then see only other faults).
 * A request still throttled after `timeoutMs` fails with a {@link ThrottledError}. A streaming
 * body is not retried (it cannot be sent twice). Idempotent: a client is changed once.
 * `createS3Client` calls it for every client it builds.
 *
 * @param client - the client (changed in place).
 * @param options - see {@link ThrottleOptions}.
 * @returns the client.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` as {@link resolveThrottleOptions}.
 */
export function throttleS3Client(client: S3Client, options: ThrottleOptions = {}): S3Client {
  const o = resolveThrottleOptions(options);
  if (installed.has(client)) return client;
  const limiters = new Map<string, AimdLimiter>();
  installed.set(client, limiters);
  const limiterFor = (key: string) => {
    let l = limiters.get(key);
    if (!l) {
      if (limiters.size >= THROTTLE_MAX_PREFIXES) dropIdle(limiters, o.maxConcurrency);
      l = new AimdLimiter({ max: o.maxConcurrency, min: o.minConcurrency });
      limiters.set(key, l);
    }
    return l;
  };
  const middleware =
    (next: (args: ThrottleArgs) => Promise<unknown>, context: MiddlewareContext) =>
    async (args: ThrottleArgs): Promise<unknown> => {
      const { input, request } = args;
      const key = throttleKey(input.Bucket, input.Key ?? input.Prefix);
      const limiter = limiterFor(key);
      const signal = context.__smithy_context?.abortSignal;
      let started: number | undefined; // the first attempt's start: a wait in the queue before it does not count
      for (let attempt = 1; ; attempt++) {
        const slot = await limiter.acquire(signal);
        started ??= Date.now();
        try {
          const out = await next(args);
          slot.release("success");
          return out;
        } catch (error) {
          if (!isThrottle(error)) {
            slot.release("other");
            throw error;
          }
          slot.release("throttled");
          if (!replayable(request?.body) || signal?.aborted) throw error;
          const pause = throttleDelayMs(attempt, o);
          const elapsed = Date.now() - started;
          if (elapsed + pause > o.timeoutMs) {
            const { name, status } = s3ErrorInfo(error);
            const message = error instanceof Error ? error.message : String(error);
            const where = `s3://${input.Bucket ?? "?"}/${input.Key ?? input.Prefix ?? ""}`;
            throw new ThrottledError(
              `Expected S3 to accept ${context.commandName ?? "a request"} for ${where} within ${o.timeoutMs} ms of throttling (throttle.timeoutMs), got ${name} (${status ?? "no status"}) to all ${attempt} attempts over ${elapsed} ms`,
              { cause: new Error(`${name} (${status ?? "no status"}): ${message}`) },
            );
          }
          try {
            await sleep(pause, undefined, signal ? { signal } : {});
          } catch (cause) {
            throw new CheckpointError(
              "ABORTED",
              `Aborted while waiting to retry a throttled request to ${key}`,
              {
                cause: signal?.reason ?? cause,
              },
            );
          }
        }
      }
    };
  // Typed loosely: the SDK's middleware types come from @smithy/types, not a dependency of ours.
  client.middlewareStack.addRelativeTo(middleware as never, {
    name: "dcpjsThrottleMiddleware",
    relation: "after",
    toMiddleware: "retryMiddleware",
    override: true,
  });
  return client;
}
