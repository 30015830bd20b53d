// Every request of the HTTP backend: manual redirects (Range kept, credentials only to the first
// origin), a bounded number in flight per origin, a stall timeout, the pinned identity sent as
// preconditions and checked on every response, resumed bodies and retries through core's `retry`.
import { CheckpointError } from "@dcpjs/core";
import { retry } from "@dcpjs/core/extend";
import pLimit, { type LimitFunction } from "p-limit";
import {
  type FileIdentity,
  identityChange,
  identityOf,
  parseContentRange,
  preconditionHeaders,
} from "./file-identity.js";
import { displayUrl, HttpRequestError, sourceChanged, statusError, transportError } from "./http-errors.js";
import type { ResolvedHttpOptions } from "./http-options.js";
import { contentLength, discard, type HttpAnswer } from "./http-transport.js";
import { envVar, sleep } from "./runtime.js";
import { TargetCursor } from "./target-cursor.js";

/** Redirects followed per request, as browsers and undici (`redirect: "follow"`) allow. */
export const MAX_REDIRECTS = 10;

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/** Per `maxConnections` and origin: the requests in flight, for the whole process. */
const LIMITS = new Map<string, LimitFunction>();

/** Why the stall timer stopped an attempt. */
class StallTimeout extends Error {}

/** A Hub revision that is rewritten to the commit the Hub names, once it names one. */
interface RevisionPin {
  /** `{endpoint}/{repo}/resolve/`. */
  readonly base: string;
  /** `{base}{revision}/`: URLs under it are pinned. */
  readonly atRevision: string;
  /** The commit (`X-Repo-Commit`), once seen. */
  commit: string | undefined;
}

/**
 * The HTTP requests of one {@link HttpFileSystem}: pinned identities and revisions live here, so
 * every stream of the file system sees the same versions.
 */
export class HttpClient {
  /** The options every request follows. */
  readonly options: ResolvedHttpOptions;
  readonly #identities = new Map<string, FileIdentity>();
  readonly #pins: RevisionPin[] = [];
  /** Per file: where its redirects led (the CDN URL), once that answered. */
  readonly #located = new Map<string, string>();
  #warned = false;

  /** @param options - the resolved options (see `resolveHttpOptions`). */
  constructor(options: ResolvedHttpOptions) {
    this.options = options;
  }

  /**
   * Pins the Hub revision under `atRevision` to the commit the Hub names on its first answer.
   * @param base - `{endpoint}/{repo}/resolve/`.
   * @param atRevision - `{base}{revision}/`.
   */
  pinRevision(base: string, atRevision: string): void {
    if (!this.#pins.some((p) => p.atRevision === atRevision))
      this.#pins.push({ base, atRevision, commit: undefined });
  }

  /** The commit a revision was pinned to, for a URL under it (undefined before the Hub named one). */
  commitFor(url: string): string | undefined {
    return this.#pins.find((p) => url.startsWith(p.atRevision))?.commit;
  }

  /** Forgets every pinned identity and pinned commit: the next contact pins afresh. */
  forget(): void {
    this.#identities.clear();
    this.#located.clear();
    for (const pin of this.#pins) pin.commit = undefined;
  }

  /** The identity pinned for a file, if it was contacted. */
  identity(url: string): FileIdentity | undefined {
    return this.#identities.get(url);
  }

  /**
   * Reads `[offset, offset + Σ targets)` of a file into `targets`, back to back: one ranged GET,
   * resumed from the last byte received when its body breaks, retried as {@link HttpOptions.maxAttempts}
   * says. A 200 to the ranged request (a server that ignores `Range`) is streamed and sliced.
   * @throws {@link CheckpointError} `TRUNCATED` past the file's end; `SOURCE_CHANGED` when the file
   * was replaced; `NOT_FOUND`, `ACCESS_DENIED`, `IO_ERROR` (naming the URL); `ABORTED` when the signal fired.
   */
  async readInto(
    url: string,
    offset: number,
    targets: readonly Uint8Array[],
    signal?: AbortSignal,
  ): Promise<void> {
    const length = targets.reduce((n, t) => n + t.byteLength, 0);
    const action = `read bytes ${offset}-${offset + length - 1} of`;
    const size = this.#identities.get(url)?.size;
    if (size !== undefined && offset + length > size) throw truncated(url, offset, length, size);
    if (length === 0) return;
    const cursor = new TargetCursor(targets);
    // Each exchange delivers what its answer holds: all that is wanted, or (a server that caps
    // ranges) a first part, after which the rest is asked for with a fresh retry budget.
    while (cursor.done < length) {
      await this.#retrying(url, action, signal, () =>
        this.#exchange(
          url,
          "GET",
          () => `bytes=${offset + cursor.done}-${offset + length - 1}`,
          action,
          signal,
          async (response, touch) => {
            const start = offset + cursor.done;
            let want = length - cursor.done;
            let skip = 0;
            if (response.status === 206) {
              const range = parseContentRange(response.headers.get("content-range"));
              this.#check(url, response, range?.total);
              if (range?.total !== undefined && offset + length > range.total)
                throw truncated(url, offset, length, range.total);
              if (
                range?.start === undefined ||
                range.end === undefined ||
                range.start > start ||
                range.end < start
              ) {
                throw new HttpRequestError(
                  "IO_ERROR",
                  `Expected Content-Range bytes ${start}-${start + want - 1}/… from ${displayUrl(url)}, got ${response.headers.get("content-range")}`,
                  { retryable: true, status: 206 },
                );
              }
              skip = start - range.start;
              want = Math.min(want, range.end - start + 1);
            } else if (response.status === 200) {
              const total = contentLength(response);
              this.#check(url, response, total);
              if (total !== undefined && offset + length > total) throw truncated(url, offset, length, total);
              // a whole file answered to a range that covers it all is no waste
              if (start > 0 || total === undefined || total > offset + length) this.#warnRangeIgnored(url);
              skip = start;
            } else {
              throw statusError(response, url, action);
            }
            const exact = response.status === 206 && skip === 0 && cursor.done + want === length;
            const got = await response.body.pump(skip, want, (chunk) => cursor.write(chunk), touch, exact);
            if (got < want)
              throw new HttpRequestError(
                "IO_ERROR",
                `Expected ${want} bytes from ${displayUrl(url)} at ${start}, got ${got} before the body ended (resumed from there)`,
                { retryable: true },
              );
          },
        ),
      );
    }
  }

  /**
   * First contact with a file: a GET of its first `bytes` bytes, which pins its identity and size.
   * @returns the file's size and its first `min(bytes, size)` bytes.
   * @throws as {@link HttpClient.readInto}; {@link NotFoundError} when it is missing.
   */
  async probe(url: string, bytes: number, signal?: AbortSignal): Promise<{ size: number; head: Uint8Array }> {
    const action = "read";
    return this.#retrying(url, action, signal, () =>
      this.#exchange(
        url,
        "GET",
        () => `bytes=0-${bytes - 1}`,
        action,
        signal,
        async (response, touch) => {
          let size: number | undefined;
          if (response.status === 206) size = parseContentRange(response.headers.get("content-range"))?.total;
          else if (response.status === 200) size = contentLength(response);
          else if (response.status === 416) {
            size = parseContentRange(response.headers.get("content-range"))?.total;
            if (size === undefined) throw statusError(response, url, action);
          } else throw statusError(response, url, action);
          if (size === undefined)
            throw new HttpRequestError(
              "IO_ERROR",
              `Expected ${displayUrl(url)} to state its size (Content-Range or Content-Length), got neither`,
              { retryable: false, status: response.status },
            );
          this.#check(url, response, size);
          if (response.status === 200 && size > bytes) this.#warnRangeIgnored(url);
          const head = new Uint8Array(Math.min(bytes, size));
          const cursor = new TargetCursor([head]);
          const exact = response.status !== 200 || size <= bytes;
          const got = await response.body.pump(
            0,
            head.byteLength,
            (chunk) => cursor.write(chunk),
            touch,
            exact,
          );
          if (got < head.byteLength)
            throw new HttpRequestError(
              "IO_ERROR",
              `Expected ${head.byteLength} bytes from ${displayUrl(url)}, got ${got} before the body ended`,
              { retryable: true },
            );
          return { size, head };
        },
      ),
    );
  }

  /**
   * A HEAD (as huggingface_hub's `get_hf_file_metadata`): a redirect to another origin (the Hub's
   * CDN) counts as found, with `X-Linked-Size` for its size; otherwise the answer pins the identity.
   * @returns the file's identity, or undefined for 404/410.
   */
  async head(url: string, signal?: AbortSignal): Promise<FileIdentity | undefined> {
    const action = "stat";
    return this.#retrying(url, action, signal, () =>
      this.#exchange(
        url,
        "HEAD",
        () => undefined,
        action,
        signal,
        async (response) => {
          discard(response);
          if (response.status === 404 || response.status === 410) return undefined;
          if (REDIRECTS.has(response.status)) {
            const linked = response.headers.get("x-linked-size");
            return {
              etag: undefined,
              lastModified: undefined,
              size: linked === null ? undefined : Number(linked),
            };
          }
          if (response.status !== 200) throw statusError(response, url, action);
          return this.#check(url, response, contentLength(response));
        },
        true,
      ),
    );
  }

  /**
   * A small document (the Hub's API), GET whole, not pinned.
   * @param url - the document.
   * @param maxBytes - the longest body accepted (bytes).
   * @param signal - aborts the request.
   * @returns its text and its `Link` header, or undefined for 404/410.
   * @throws as {@link HttpClient.readInto}; {@link MetadataError} for a body over `maxBytes`.
   */
  async getText(
    url: string,
    maxBytes: number,
    signal?: AbortSignal,
  ): Promise<{ text: string; link: string | null } | undefined> {
    const action = "read";
    return this.#retrying(url, action, signal, () =>
      this.#exchange(
        url,
        "GET",
        () => undefined,
        action,
        signal,
        async (response) => {
          if (response.status === 404 || response.status === 410) {
            discard(response);
            return undefined;
          }
          if (response.status !== 200) {
            discard(response);
            throw statusError(response, url, action);
          }
          return {
            text: await response.body.text(maxBytes, response.url),
            link: response.headers.get("link"),
          };
        },
      ),
    );
  }

  /**
   * The Hub repository a URL lies in, when it is under a revision pinned by an `hf://` id: the
   * repository id, the revision to ask for (the commit once known) and the path below it.
   */
  hubLocation(
    url: string,
  ): { repo: string; revision: string; path: string; endpointBase: string } | undefined {
    const pin = this.#pins.find((p) => url.startsWith(p.atRevision) || `${url}/` === p.atRevision);
    if (pin === undefined) return undefined;
    const endpoint = this.options.hfEndpoint;
    const repo = pin.base.slice(endpoint.length + 1, -"/resolve/".length);
    const revision = pin.commit ?? pin.atRevision.slice(pin.base.length, -1);
    return { repo, revision, path: url.slice(pin.atRevision.length), endpointBase: endpoint };
  }

  /** Pins the identity a response states on first contact, else checks it against the pinned one. */
  #check(url: string, response: HttpAnswer, size: number | undefined): FileIdentity {
    const seen = identityOf(response.headers, size, response.url ? new URL(response.url).origin : undefined);
    const pinned = this.#identities.get(url);
    if (pinned === undefined) {
      this.#identities.set(url, seen);
      return seen;
    }
    const change = identityChange(pinned, seen);
    if (change !== undefined) throw sourceChanged(url, change);
    return pinned.size === undefined && size !== undefined ? { ...pinned, size } : pinned;
  }

  #warnRangeIgnored(url: string): void {
    if (this.#warned) return;
    this.#warned = true;
    this.options.onWarning(
      `dcpjs: ${new URL(url).origin} ignores Range requests (answered 200 with the whole file to a ranged GET of ${displayUrl(url)}); its bytes are streamed and the wanted ranges sliced out, which reads more than needed`,
    );
  }

  /** The caller's signal and the file system's, as one. */
  #signal(signal: AbortSignal | undefined): AbortSignal | undefined {
    const own = this.options.signal;
    if (own === undefined || signal === undefined || own === signal) return signal ?? own;
    return AbortSignal.any([own, signal]);
  }

  /**
   * Runs attempts of one request through core's `retry`: retryable {@link HttpRequestError}s are
   * tried again after `Retry-After` (when the server sent one) and the policy's backoff.
   */
  async #retrying<T>(
    url: string,
    action: string,
    callerSignal: AbortSignal | undefined,
    attempt: () => Promise<T>,
  ): Promise<T> {
    const signal = this.#signal(callerSignal);
    try {
      return await retry(() => attempt(), {
        attempts: this.options.maxAttempts,
        ...(signal ? { signal } : {}),
        shouldRetry: (error) => error instanceof HttpRequestError && error.retryable && !signal?.aborted,
        onRetry: async (error) => {
          const wait = (error as HttpRequestError).retryAfterMs;
          if (wait !== undefined && wait > 0) await sleep(wait, signal);
        },
      });
    } catch (error) {
      if (signal?.aborted) throw aborted(url, action, signal.reason);
      throw error;
    }
  }

  /**
   * One attempt: waits for a slot of the URL's origin, sends the request (following redirects),
   * hands the response to `consume`; fails when no byte arrives for `timeoutMs`. Whatever
   * `consume` leaves of the body is dropped.
   */
  async #exchange<T>(
    url: string,
    method: "GET" | "HEAD",
    range: () => string | undefined,
    action: string,
    callerSignal: AbortSignal | undefined,
    consume: (response: HttpAnswer, touch: () => void) => Promise<T>,
    stopAtOtherOrigin = false,
  ): Promise<T> {
    const signal = this.#signal(callerSignal);
    return this.#limitFor(url)(async () => {
      if (signal?.aborted) throw aborted(url, action, signal.reason);
      const controller = new AbortController();
      const onAbort = () => controller.abort(signal?.reason);
      signal?.addEventListener("abort", onAbort, { once: true });
      // the stall timer: a byte seen moves its deadline (a timer per piece would cost more)
      const timeoutMs = this.options.timeoutMs;
      let last = Date.now();
      const touch = () => {
        last = Date.now();
      };
      const check = () => {
        const idle = Date.now() - last;
        if (idle >= timeoutMs) controller.abort(new StallTimeout());
        else timer = setTimeout(check, timeoutMs - idle);
      };
      let timer = setTimeout(check, timeoutMs);
      try {
        const response = await this.#fetchFollowing(
          url,
          method,
          range(),
          controller.signal,
          stopAtOtherOrigin,
        );
        touch();
        return await consume(response, touch);
      } catch (error) {
        controller.abort();
        if (signal?.aborted) throw aborted(url, action, signal.reason);
        if (controller.signal.reason instanceof StallTimeout && !(error instanceof CheckpointError))
          throw new HttpRequestError(
            "IO_ERROR",
            `Expected a byte from ${displayUrl(url)} within ${this.options.timeoutMs} ms (to ${action} it), got none`,
            { retryable: true, cause: error },
          );
        throw transportError(error, url, action);
      } finally {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      }
    });
  }

  /**
   * Sends a request, following up to {@link MAX_REDIRECTS} redirects by hand. Where a redirect led
   * somewhere (the Hub's CDN, on another origin or as a path of the same one) and that answered,
   * later requests for the file go there directly, as hf_transfer ranges against the CDN URL it
   * resolved once; an answer there of 401/403/404/410 or a redirect (an expired signed URL) sends
   * the request the long way again.
   */
  async #fetchFollowing(
    url: string,
    method: "GET" | "HEAD",
    range: string | undefined,
    signal: AbortSignal,
    stopAtOtherOrigin: boolean,
  ): Promise<HttpAnswer> {
    const origin = new URL(url).origin;
    const located = stopAtOtherOrigin ? undefined : this.#located.get(url);
    if (located !== undefined) {
      const response = await this.#send(url, located, origin, method, range, signal);
      if (!REDIRECTS.has(response.status) && ![401, 403, 404, 410].includes(response.status)) return response;
      discard(response);
      this.#located.delete(url);
    }
    let target = this.#pinned(url);
    for (let hop = 0; ; hop++) {
      const response = await this.#send(url, target, origin, method, range, signal);
      this.#learnCommit(url, response);
      const location = REDIRECTS.has(response.status) ? response.headers.get("location") : null;
      if (location === null) {
        // a transport that follows redirects itself (fetch in a browser) says where they led in `url`
        const led = hop > 0 ? target : response.url !== target ? response.url : undefined;
        if (led !== undefined && (response.status === 200 || response.status === 206))
          this.#located.set(url, led);
        return response;
      }
      const next = new URL(location, target).href;
      if (stopAtOtherOrigin && new URL(next).origin !== origin) return response;
      discard(response);
      if (hop >= MAX_REDIRECTS)
        throw new HttpRequestError(
          "IO_ERROR",
          `Expected ${displayUrl(url)} to answer within ${MAX_REDIRECTS} redirects, got more`,
          { retryable: false },
        );
      target = next;
    }
  }

  /** One request for the file `url` to `target`: credentials only to `url`'s origin, preconditions only to the pinned one. */
  #send(
    url: string,
    target: string,
    origin: string,
    method: "GET" | "HEAD",
    range: string | undefined,
    signal: AbortSignal,
  ): Promise<HttpAnswer> {
    const to = new URL(target).origin;
    return this.options.transport.send(
      target,
      method,
      {
        "accept-encoding": "identity",
        ...(to === origin ? this.#credentials(url) : {}),
        ...(range !== undefined ? { range } : {}),
        ...preconditionHeaders(this.#identities.get(url), range !== undefined, to),
      },
      signal,
    );
  }

  /** Extra headers and the token, for requests to the URL's own origin. */
  #credentials(url: string): Record<string, string> {
    const hub = new URL(this.options.hfEndpoint).origin;
    const token = this.options.token ?? (new URL(url).origin === hub ? envVar("HF_TOKEN") : undefined);
    return { ...this.options.headers, ...(token ? { authorization: `Bearer ${token}` } : {}) };
  }

  /** The URL to request: under a pinned Hub revision, at its commit. */
  #pinned(url: string): string {
    const pin = this.#pins.find((p) => p.commit !== undefined && url.startsWith(p.atRevision));
    return pin ? `${pin.base}${pin.commit}/${url.slice(pin.atRevision.length)}` : url;
  }

  /** Pins a Hub revision to the `X-Repo-Commit` of the first answer under it. */
  #learnCommit(url: string, response: HttpAnswer): void {
    const commit = response.headers.get("x-repo-commit");
    if (commit === null || commit.length === 0) return;
    const pin = this.#pins.find((p) => p.commit === undefined && url.startsWith(p.atRevision));
    if (pin) pin.commit = encodeURIComponent(commit);
  }

  /** The origin's limiter, shared by every client of the process with this `maxConnections` (one budget, not one per rank). */
  #limitFor(url: string): LimitFunction {
    const key = `${this.options.maxConnections} ${new URL(url).origin}`;
    let limit = LIMITS.get(key);
    if (limit === undefined) {
      limit = pLimit(this.options.maxConnections);
      LIMITS.set(key, limit);
    }
    return limit;
  }
}

function truncated(url: string, offset: number, length: number, size: number): CheckpointError {
  return new HttpRequestError(
    "TRUNCATED",
    `Expected ${displayUrl(url)} to hold bytes ${offset}-${offset + length - 1}, got a file of ${size} bytes`,
    { retryable: false },
  );
}

function aborted(url: string, action: string, reason: unknown): CheckpointError {
  return new CheckpointError("ABORTED", `Aborted while trying to ${action} ${displayUrl(url)}`, {
    cause: reason,
  });
}
