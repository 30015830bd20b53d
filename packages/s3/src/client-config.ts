import { S3Client, type S3ClientConfig as SdkS3ClientConfig } from "@aws-sdk/client-s3";
import { CheckpointError } from "@dcpjs/core";
import { assertIntegerInRange } from "@dcpjs/core/extend";
import { GuardedHttpAgent, GuardedHttpsAgent } from "./socket-guard.js";
import { resolveThrottleOptions, type ThrottleOptions, throttleS3Client } from "./throttle.js";

/** The multipart part size used when none is given: 8 MiB, as s3torchconnector and AWS guidance. */
export const DEFAULT_PART_SIZE_BYTES = 8 * 1024 * 1024;
/** S3's smallest part size (except the last part): 5 MiB. */
export const MIN_PART_SIZE_BYTES = 5 * 1024 * 1024;
/** S3's largest part size: 5 GiB. */
export const MAX_PART_SIZE_BYTES = 5 * 1024 * 1024 * 1024;
/** Attempts per request when none is given (s3torchconnector's default). */
export const DEFAULT_MAX_ATTEMPTS = 10;
/** The most attempts accepted (s3torchconnector's native client panics above 64). */
export const MAX_MAX_ATTEMPTS = 64;
/** Sockets per client when none is given: enough for 4 files × 4 parts in flight. */
export const DEFAULT_MAX_CONCURRENCY = 16;
/** Time allowed to establish a connection when none is given (ms). */
export const DEFAULT_CONNECTION_TIMEOUT_MS = 10_000;
/** Time a connection may stay silent mid-request when none is given (ms). */
export const DEFAULT_SOCKET_TIMEOUT_MS = 30_000;
/** Parts of one multipart upload in flight when none is given. */
export const DEFAULT_QUEUE_SIZE = 4;

/** When the SDK computes or checks flexible checksums (`x-amz-checksum-*`). */
export type ChecksumMode = "WHEN_SUPPORTED" | "WHEN_REQUIRED";

/**
 * How dcpjs builds its S3 client, after s3torchconnector's `S3ClientConfig`. Every field is
 * optional; pass your own `S3Client` instead to control everything.
 */
export interface S3ClientConfig {
  /** The region. @default `AWS_REGION`, else `AWS_DEFAULT_REGION`, else `us-east-1` */
  readonly region?: string;
  /**
   * An S3-compatible endpoint (MinIO, Ceph RGW, R2…).
   * @default `S3_ENDPOINT`, else `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`, else AWS's own
   */
  readonly endpoint?: string;
  /** Address buckets as `endpoint/bucket` instead of `bucket.endpoint`. @default true when an endpoint is set */
  readonly forcePathStyle?: boolean;
  /** Credentials or a provider. @default the SDK's default chain (environment, profile, IMDS…) */
  readonly credentials?: SdkS3ClientConfig["credentials"];
  /**
   * Multipart part size in bytes, 5 MiB–5 GiB. An upload holds at most
   * `queueSize × partSize` bytes in memory. @default 8 MiB
   */
  readonly partSize?: number;
  /** Parts of one upload sent concurrently. @default 4 */
  readonly queueSize?: number;
  /** Attempts per request (the SDK's standard retry mode), 1–64. @default 10 */
  readonly maxAttempts?: number;
  /**
   * Milliseconds to establish a connection before the attempt fails (and is retried, within
   * `maxAttempts`). @default 10000
   */
  readonly connectionTimeoutMs?: number;
  /**
   * Milliseconds a connection may stay silent — no byte sent or received — while a request or its
   * response body is in flight; then the socket is closed and the attempt fails (and is retried,
   * within `maxAttempts`). So a stalled server ends a save or load within about
   * `maxAttempts × socketTimeoutMs` plus backoff, with an `IO_ERROR`. @default 30000
   */
  readonly socketTimeoutMs?: number;
  /** Sockets the client keeps alive and uses at most (its keep-alive agent's `maxSockets`). @default 16 */
  readonly maxConcurrency?: number;
  /**
   * When the SDK adds flexible checksums to requests. `WHEN_REQUIRED` is needed where the server
   * rejects `aws-chunked` streaming bodies: Ceph RGW (411 MissingContentLength), older MinIO, R2.
   * dcpjs keeps its own CRC-32 per item in `.metadata` either way. @default the SDK's `WHEN_SUPPORTED`
   */
  readonly requestChecksumCalculation?: ChecksumMode;
  /** When the SDK validates response checksums; see `requestChecksumCalculation`. @default the SDK's `WHEN_SUPPORTED` */
  readonly responseChecksumValidation?: ChecksumMode;
  /**
   * How the client answers S3 throttling (503 `SlowDown`, 429): per bucket and prefix, fewer
   * requests in flight (AIMD) and retries with jittered exponential backoff, up to a deadline
   * (see {@link ThrottleOptions}); `false` leaves throttles to the SDK's standard retry mode.
   * @default {} (throttling on, its ceiling `maxConcurrency`)
   */
  readonly throttle?: ThrottleOptions | false;
}

/** The transfer settings dcpjs itself uses, resolved and validated. */
export interface S3TransferSettings {
  /** Multipart part size in bytes. */
  readonly partSize: number;
  /** Parts in flight per upload. */
  readonly queueSize: number;
}

/**
 * The attempts per request a config asks for — the one place `S3ClientConfig.maxAttempts` is read:
 * the client {@link createS3Client} builds gets it, and {@link maxAttemptsOf} reads it back.
 *
 * @param config - the config.
 * @returns `maxAttempts`, else {@link DEFAULT_MAX_ATTEMPTS} (10, s3torchconnector's default).
 */
export function configuredMaxAttempts(config: S3ClientConfig = {}): number {
  return config.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
}

/** Attempts used when a client's `maxAttempts` provider fails or gives no number (the SDK's default). */
const FALLBACK_MAX_ATTEMPTS = 3;

const attemptsByClient = new WeakMap<S3Client, Promise<number>>();

/**
 * A client's `maxAttempts` (the SDK's config provider), read once per client — the attempts that
 * dcpjs's own retries (a ranged GET resumed, a verified GET) allow in all, on top of the SDK's
 * retries of each request, as its standard retry mode counts them.
 *
 * @param client - any `S3Client` (built by {@link createS3Client} or not).
 * @returns an integer ≥ 1: the client's `maxAttempts` (rounded up, at least 1), or 3 (the SDK's
 *   default) when its provider fails or answers no finite number.
 */
export function maxAttemptsOf(client: S3Client): Promise<number> {
  let attempts = attemptsByClient.get(client);
  if (!attempts) {
    const provider = client.config.maxAttempts as unknown as (() => Promise<number>) | number | undefined;
    attempts = Promise.resolve(typeof provider === "function" ? provider() : provider).then(
      (n) =>
        typeof n === "number" && Number.isFinite(n) ? Math.max(1, Math.ceil(n)) : FALLBACK_MAX_ATTEMPTS,
      () => FALLBACK_MAX_ATTEMPTS,
    );
    attemptsByClient.set(client, attempts);
  }
  return attempts;
}

/**
 * Validates the config up front and resolves the transfer settings.
 *
 * @param config - the config.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when `partSize` is outside 5 MiB–5 GiB,
 * `maxAttempts` outside 1–64, `queueSize` / `maxConcurrency` below 1, a timeout outside
 * 1 ms–1 h, or `throttle` options out of range.
 */
export function resolveTransferSettings(config: S3ClientConfig = {}): S3TransferSettings {
  const partSize = config.partSize ?? DEFAULT_PART_SIZE_BYTES;
  assertIntegerInRange("partSize", partSize, MIN_PART_SIZE_BYTES, MAX_PART_SIZE_BYTES, " bytes");
  assertIntegerInRange("maxAttempts", configuredMaxAttempts(config), 1, MAX_MAX_ATTEMPTS);
  const queueSize = config.queueSize ?? DEFAULT_QUEUE_SIZE;
  assertIntegerInRange("queueSize", queueSize, 1, 10_000);
  assertIntegerInRange("maxConcurrency", config.maxConcurrency ?? DEFAULT_MAX_CONCURRENCY, 1, 100_000);
  assertIntegerInRange(
    "connectionTimeoutMs",
    config.connectionTimeoutMs ?? DEFAULT_CONNECTION_TIMEOUT_MS,
    1,
    3_600_000,
  );
  assertIntegerInRange("socketTimeoutMs", config.socketTimeoutMs ?? DEFAULT_SOCKET_TIMEOUT_MS, 1, 3_600_000);
  if (config.throttle !== false)
    resolveThrottleOptions(config.throttle, config.maxConcurrency ?? DEFAULT_MAX_CONCURRENCY);
  return { partSize, queueSize };
}

/**
 * Builds an `S3Client` from a {@link S3ClientConfig}: keep-alive agents sized to
 * `maxConcurrency` whose sockets handle their `error` events for their whole life (a reset after a
 * request settled closes the socket, never the process: {@link GuardedHttpAgent}), connection and
 * socket-idle timeouts, path-style addressing for custom endpoints, the SDK's credential chain,
 * and throttling handled per bucket and prefix ({@link throttleS3Client}) unless `throttle` is `false`.
 *
 * @param config - the config.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` as {@link resolveTransferSettings}.
 */
export function createS3Client(config: S3ClientConfig = {}): S3Client {
  resolveTransferSettings(config);
  const env = process.env;
  const endpoint = config.endpoint ?? env.S3_ENDPOINT ?? env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL;
  const maxSockets = config.maxConcurrency ?? DEFAULT_MAX_CONCURRENCY;
  const sdk: SdkS3ClientConfig = {
    region: config.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? "us-east-1",
    forcePathStyle: config.forcePathStyle ?? endpoint !== undefined,
    maxAttempts: configuredMaxAttempts(config),
    requestHandler: {
      // Every socket listens to its errors for its whole life: none can crash the process.
      httpAgent: new GuardedHttpAgent({ keepAlive: true, maxSockets }),
      httpsAgent: new GuardedHttpsAgent({ keepAlive: true, maxSockets }),
      connectionTimeout: config.connectionTimeoutMs ?? DEFAULT_CONNECTION_TIMEOUT_MS,
      socketTimeout: config.socketTimeoutMs ?? DEFAULT_SOCKET_TIMEOUT_MS,
    },
    ...(endpoint !== undefined ? { endpoint } : {}),
    ...(config.credentials !== undefined ? { credentials: config.credentials } : {}),
    ...(config.requestChecksumCalculation
      ? { requestChecksumCalculation: config.requestChecksumCalculation }
      : {}),
    ...(config.responseChecksumValidation
      ? { responseChecksumValidation: config.responseChecksumValidation }
      : {}),
  };
  const client = new S3Client(sdk);
  if (config.throttle !== false) throttleS3Client(client, { maxConcurrency: maxSockets, ...config.throttle });
  return client;
}
