// One HTTP request over Node's own client (node:http / node:https and their global keep-alive
// agents): its body is a Node stream whose chunks are handed over as they arrive, with no web
// stream (fetch's `Response.body`) between the socket and the caller's buffers.
import type { IncomingHttpHeaders, IncomingMessage } from "node:http";
import { request as httpRequest, STATUS_CODES } from "node:http";
import { request as httpsRequest } from "node:https";
import { MetadataError } from "@dcpjs/core";
import { displayUrl } from "./http-errors.js";

/** A response's status line and headers, with its body still to be read. */
export interface HttpAnswer {
  /** The HTTP status. */
  readonly status: number;
  /** The status's reason phrase (the server's, else the standard one). */
  readonly statusText: string;
  /** The response headers. */
  readonly headers: Headers;
  /** The URL this response answers (the request's target, not a redirect's). */
  readonly url: string;
  /** The body: read it to its end, or {@link discard} it. */
  readonly body: IncomingMessage;
}

/** Bodies up to this size are read to their end when dropped, so their connection is kept. */
const DRAIN_BYTES = 64 * 1024;

/**
 * Sends one request; redirects are not followed (the caller does, as `redirect: "manual"`).
 * @param target - an `http:` or `https:` URL.
 * @param method - `GET` or `HEAD`.
 * @param headers - the request headers.
 * @param signal - aborts the request and its body.
 * @returns the response, once its headers arrived.
 * @throws what Node's client throws (a refused or reset connection, an abort: the signal's reason).
 */
export function send(
  target: string,
  method: "GET" | "HEAD",
  headers: Readonly<Record<string, string>>,
  signal: AbortSignal,
): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const url = new URL(target);
    if (url.protocol !== "http:" && url.protocol !== "https:")
      throw new TypeError(`Expected an http: or https: URL, got ${url.protocol}`);
    const request = url.protocol === "https:" ? httpsRequest : httpRequest;
    const req = request(url, { method, headers, signal }, (res) => {
      // a later error (an abort, a reset) reaches whoever reads the body; never an unhandled one
      res.on("error", () => {});
      const status = res.statusCode ?? 0;
      resolve({
        status,
        statusText: res.statusMessage || (STATUS_CODES[status] ?? ""),
        headers: headersOf(res.headers),
        url: target,
        body: res,
      });
    });
    req.once("error", reject);
    req.end();
  });
}

/**
 * Drops a body not wanted: a small one is read to its end (the connection is kept), a big one
 * or one of unknown size closes its connection.
 * @param answer - the response.
 */
export function discard(answer: HttpAnswer): void {
  const length = Number(answer.headers.get("content-length") ?? Number.NaN);
  if (answer.body.complete || (Number.isFinite(length) && length <= DRAIN_BYTES)) answer.body.resume();
  else answer.body.destroy();
}

/**
 * Reads a whole (small) body as text, at most `maxBytes` of it.
 * @param answer - the response.
 * @param maxBytes - the most bytes accepted (bytes).
 * @returns the body, decoded as UTF-8.
 * @throws {@link MetadataError} when the body is longer than `maxBytes` (the body is dropped as
 *   soon as it is: memory stays within `maxBytes`).
 */
export async function textOf(answer: HttpAnswer, maxBytes: number): Promise<string> {
  const parts: Buffer[] = [];
  let bytes = 0;
  for await (const part of answer.body) {
    bytes += (part as Buffer).byteLength;
    if (bytes > maxBytes) {
      answer.body.destroy();
      throw new MetadataError(`Expected at most ${maxBytes} bytes from ${displayUrl(answer.url)}, got more`);
    }
    parts.push(part as Buffer);
  }
  return Buffer.concat(parts).toString("utf8");
}

function headersOf(raw: IncomingHttpHeaders): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(raw))
    if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(", ") : value);
  return headers;
}
