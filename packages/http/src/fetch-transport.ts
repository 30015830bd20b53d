// One HTTP request over `fetch` — the transport of browsers (the default under the `browser`
// condition, see the package's `#default-transport` import), usable under Node too. Bodies are
// read from `Response.body` with a stream reader, piece by piece into the caller's buffers: never
// `arrayBuffer()` of a whole file. Requests go with `cache: "no-store"`, so no byte of a
// checkpoint stays in the browser's HTTP cache, and nothing depends on the Cache API.
import { MetadataError } from "@dcpjs/core";
import { displayUrl } from "./http-errors.js";
import { type AnswerBody, DRAIN_BYTES, type HttpAnswer, type HttpTransport } from "./http-transport.js";

/** Options of {@link createFetchTransport}. */
export interface FetchTransportOptions {
  /**
   * How redirects are met: `"follow"` lets `fetch` follow them (a browser can do nothing else: its
   * `"manual"` answers are opaque); `"manual"` hands the 3xx to the backend, which follows them as
   * the Node transport does (credentials only to the first origin). Where `fetch` follows them,
   * it drops `Authorization` on a redirect to another origin, as the Fetch standard says.
   * @default "follow"
   */
  readonly redirect?: "follow" | "manual";
  /** The `fetch` to call. @default `globalThis.fetch` */
  readonly fetch?: typeof fetch;
  /**
   * Send the preconditions (`If-Match`, `If-Range`, `If-Unmodified-Since`) to origins other than
   * the page's too. They are not CORS-safelisted request headers: a cross-origin request with them
   * needs a preflight the server must allow, and CDNs (the Hub's) do not list them. Without them
   * the identity of every answer (ETag, size; Content-Range) is still checked against the pinned
   * one, so a file replaced mid-load still fails `SOURCE_CHANGED` where the server exposes its
   * `ETag`. Outside a page (no `location`) they are always sent.
   * @default false
   */
  readonly crossOriginPreconditions?: boolean;
}

/** The conditional request headers a cross-origin request from a page leaves out (see {@link FetchTransportOptions.crossOriginPreconditions}). */
const PRECONDITIONS = new Set(["if-match", "if-range", "if-unmodified-since"]);

/** The origin of the page this runs in, if any. */
function pageOrigin(): string | undefined {
  return (globalThis as { location?: { origin?: string } }).location?.origin;
}

/** Bytes of the scratch buffer a body is read through, where bodies are byte streams (BYOB readers). */
const SCRATCH_BYTES = 256 * 1024;

/** A BYOB reader of `stream`, where it is a byte stream (Chromium's and undici's `Response.body`); else undefined. */
function byobReader(stream: ReadableStream<Uint8Array>): ReadableStreamBYOBReader | undefined {
  try {
    return stream.getReader({ mode: "byob" });
  } catch {
    return undefined;
  }
}

/** A body read from `Response.body` through a stream reader. */
class FetchBody implements AnswerBody {
  constructor(readonly stream: ReadableStream<Uint8Array> | null) {}

  async pump(
    skip: number,
    want: number,
    sink: (chunk: Uint8Array) => void,
    touch: () => void,
    exact = false,
  ): Promise<number> {
    const stream = this.stream;
    if (stream === null) return 0;
    if (want === 0) {
      stream.cancel().catch(() => {});
      return 0;
    }
    const reader = byobReader(stream);
    const pieces = reader === undefined ? stream.getReader() : undefined;
    // One scratch buffer per body, reused (a BYOB read hands it back transferred): the body makes no
    // garbage the size of itself, which a page's memory would hold until the next collection.
    let scratch = reader === undefined ? undefined : new Uint8Array(SCRATCH_BYTES);
    const next = async (room: number): Promise<Uint8Array | undefined> => {
      if (pieces !== undefined) {
        const { done, value } = await pieces.read();
        return done ? undefined : value;
      }
      const { done, value } = await reader!.read(
        new Uint8Array(scratch!.buffer, 0, Math.min(room, SCRATCH_BYTES)),
      );
      if (value !== undefined) scratch = new Uint8Array(value.buffer);
      return done ? undefined : value;
    };
    let delivered = 0;
    try {
      for (;;) {
        const room = skip > 0 ? skip : want > delivered ? want - delivered : 1;
        let chunk = await next(room);
        if (chunk === undefined) return delivered;
        touch();
        // more than the body should hold: what was wanted is in, the rest is dropped
        if (delivered === want) break;
        if (skip > 0) {
          if (chunk.byteLength <= skip) {
            skip -= chunk.byteLength;
            continue;
          }
          chunk = chunk.subarray(skip);
          skip = 0;
        }
        if (chunk.byteLength > want - delivered) chunk = chunk.subarray(0, want - delivered);
        sink(chunk);
        delivered += chunk.byteLength;
        // a body that should end here is read to its end, so its connection is kept for the next request
        if (delivered === want && !exact) break;
      }
      (reader ?? pieces)!.cancel().catch(() => {});
      return delivered;
    } catch (error) {
      (reader ?? pieces)!.cancel(error).catch(() => {});
      throw error;
    } finally {
      (reader ?? pieces)!.releaseLock();
    }
  }

  discard(length: number | undefined): void {
    const stream = this.stream;
    if (stream === null || stream.locked) return;
    if (length !== undefined && length <= DRAIN_BYTES) {
      const reader = stream.getReader();
      const drain = (): Promise<void> => reader.read().then((r) => (r.done ? undefined : drain()));
      drain().catch(() => {});
    } else stream.cancel().catch(() => {});
  }

  async text(maxBytes: number, url: string): Promise<string> {
    const stream = this.stream;
    if (stream === null) return "";
    const reader = stream.getReader();
    const parts: Uint8Array[] = [];
    let bytes = 0;
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        bytes += value.byteLength;
        if (bytes > maxBytes) {
          reader.cancel().catch(() => {});
          throw new MetadataError(`Expected at most ${maxBytes} bytes from ${displayUrl(url)}, got more`);
        }
        parts.push(value);
      }
    } finally {
      reader.releaseLock();
    }
    const all = new Uint8Array(bytes);
    let at = 0;
    for (const part of parts) {
      all.set(part, at);
      at += part.byteLength;
    }
    return new TextDecoder().decode(all);
  }
}

/**
 * A transport over `fetch`: ranged GETs whose bodies are streamed into the caller's buffers; an
 * abort of the signal ends the request and its body (the connection is closed, no request stays
 * pending).
 * @param options - how redirects are met, which `fetch` to call.
 * @returns the transport, for {@link HttpOptions.transport}.
 */
export function createFetchTransport(options: FetchTransportOptions = {}): HttpTransport {
  const redirect = options.redirect ?? "follow";
  return {
    async send(target, method, headers, signal): Promise<HttpAnswer> {
      const url = new URL(target);
      if (url.protocol !== "http:" && url.protocol !== "https:")
        throw new TypeError(`Expected an http: or https: URL, got ${url.protocol}`);
      const doFetch = options.fetch ?? globalThis.fetch;
      const page = pageOrigin();
      if (!options.crossOriginPreconditions && page !== undefined && page !== url.origin)
        headers = Object.fromEntries(Object.entries(headers).filter(([name]) => !PRECONDITIONS.has(name)));
      // `cache` is not in Node 20's RequestInit type; undici and browsers take it. `accept-encoding`
      // is a forbidden header in browsers (dropped there: they ask ranges as identity themselves).
      const init = { method, headers, signal, redirect, cache: "no-store" } as RequestInit;
      const response = await doFetch(target, init);
      return {
        status: response.status,
        statusText: response.statusText,
        headers: response.headers,
        url: response.url || target,
        body: new FetchBody(response.body),
      };
    },
  };
}

/** The transport over the global `fetch`, following redirects as `fetch` does (the browser default). */
export const fetchTransport: HttpTransport = createFetchTransport();

/** The transport used when {@link HttpOptions.transport} is not given, in browsers. */
export const defaultTransport: HttpTransport = fetchTransport;
