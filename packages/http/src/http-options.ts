import { assertIntegerInRange, type ReadCache } from "@dcpjs/core/extend";
import { defaultTransport } from "#default-transport";
import type { HttpTransport } from "./http-transport.js";
import { emitWarning, envVar } from "./runtime.js";

/** Requests in flight per origin, unless {@link HttpOptions.maxConnections} says otherwise. */
export const DEFAULT_MAX_CONNECTIONS = 8;
/** Milliseconds without a byte before an attempt fails, unless {@link HttpOptions.timeoutMs} says otherwise. */
export const DEFAULT_TIMEOUT_MS = 30_000;
/** Attempts per request, unless {@link HttpOptions.maxAttempts} says otherwise. */
export const DEFAULT_MAX_ATTEMPTS = 5;
/** The longest `Retry-After` honoured (ms); a server asking for more is retried after this long. */
export const MAX_RETRY_AFTER_MS = 60_000;

/** Options of the HTTP backend ({@link HttpFileSystem}, {@link HttpStorageReader}, the registry's `fileSystem`). */
export interface HttpOptions {
  /** Extra request headers, sent to the origin of the requested URL only (never across a redirect to another origin). */
  readonly headers?: Readonly<Record<string, string>>;
  /**
   * A bearer token (`Authorization: Bearer …`), sent to the origin of the requested URL only — never
   * forwarded to another origin a redirect leads to (the Hub's CDN), as huggingface_hub.
   * @default for `hf://` ids, `process.env.HF_TOKEN`; none otherwise
   */
  readonly token?: string;
  /**
   * Requests in flight per origin (an integer ≥ 1), shared by every HTTP file system of the
   * process with the same value (the ranks of one process draw on one budget).
   * @default {@link DEFAULT_MAX_CONNECTIONS} (8)
   */
  readonly maxConnections?: number;
  /** Per attempt: no byte for this many milliseconds fails it (and it is retried). @default {@link DEFAULT_TIMEOUT_MS} (30 s) */
  readonly timeoutMs?: number;
  /**
   * Attempts per request, the first included, through core's `retry()` (5xx, 408, 429, resets,
   * timeouts and broken bodies; `Retry-After` on 429/503 honoured up to {@link MAX_RETRY_AFTER_MS}).
   * Also the rereads of a run whose bytes fail their checksum (`maxAttempts − 1`).
   * @default {@link DEFAULT_MAX_ATTEMPTS} (5)
   */
  readonly maxAttempts?: number;
  /** The Hugging Face Hub `hf://` ids resolve against. @default `process.env.HF_ENDPOINT` ?? `https://huggingface.co` */
  readonly hfEndpoint?: string;
  /** Ends every request of this backend with `ABORTED`. */
  readonly signal?: AbortSignal;
  /**
   * Called once per file system with a warning (a server that ignores `Range`).
   * @default `process.emitWarning(message, { code: "DCPJS_HTTP_RANGE_IGNORED" })` (`console.warn` in a browser)
   */
  readonly onWarning?: (message: string) => void;
  /**
   * A machine-local read cache folder (core's `ReadCache`, the folder S3's `cacheDir` uses too):
   * ranks and processes on one machine that read the same files fetch each 8 MiB block once, and
   * a second load is served from disk. Blocks are keyed by the URL without its query string (for
   * `hf://`, the Hub's URL at the pinned commit) and the file's pinned identity (ETag, else
   * Last-Modified) and size: a replaced file misses, never mixes bytes. @default no cache
   */
  readonly cacheDir?: string;
  /** A read cache to share (its stats, its bounds); overrides `cacheDir`. @default one in `cacheDir`, if given */
  readonly readCache?: ReadCache;
  /**
   * What sends the requests: Node's own client (node:http / node:https) or `fetch`
   * ({@link fetchTransport}, {@link createFetchTransport}).
   * @default under Node, node:http / node:https; in browsers (the package's `browser` export
   *   condition), {@link fetchTransport}
   */
  readonly transport?: HttpTransport;
}

/** {@link HttpOptions} with every default filled in. */
export interface ResolvedHttpOptions {
  readonly headers: Readonly<Record<string, string>>;
  readonly token: string | undefined;
  readonly maxConnections: number;
  readonly timeoutMs: number;
  readonly maxAttempts: number;
  readonly hfEndpoint: string;
  readonly signal: AbortSignal | undefined;
  readonly onWarning: (message: string) => void;
  readonly transport: HttpTransport;
}

/**
 * Fills in the defaults of {@link HttpOptions}.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when `maxConnections` or `maxAttempts` is not an
 * integer ≥ 1, or `timeoutMs` not an integer ≥ 1.
 */
export function resolveHttpOptions(options: HttpOptions = {}): ResolvedHttpOptions {
  const resolved: ResolvedHttpOptions = {
    headers: options.headers ?? {},
    token: options.token,
    maxConnections: options.maxConnections ?? DEFAULT_MAX_CONNECTIONS,
    timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    maxAttempts: options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
    hfEndpoint: (options.hfEndpoint ?? envVar("HF_ENDPOINT") ?? "https://huggingface.co").replace(/\/+$/, ""),
    signal: options.signal,
    onWarning: options.onWarning ?? ((message) => emitWarning(message, "DCPJS_HTTP_RANGE_IGNORED")),
    transport: options.transport ?? defaultTransport,
  };
  assertIntegerInRange("maxConnections", resolved.maxConnections, 1);
  assertIntegerInRange("timeoutMs", resolved.timeoutMs, 1);
  assertIntegerInRange("maxAttempts", resolved.maxAttempts, 1);
  return resolved;
}
