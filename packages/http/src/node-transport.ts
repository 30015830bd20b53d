// One HTTP request over Node's own client (node:http / node:https and their global keep-alive
// agents): its body is a Node stream whose chunks are handed over as they arrive, with no web
// stream (fetch's `Response.body`) between the socket and the caller's buffers. The default
// transport under Node (see the package's `#default-transport` import).
import type { IncomingHttpHeaders, IncomingMessage } from "node:http";
import { request as httpRequest, STATUS_CODES } from "node:http";
import { request as httpsRequest } from "node:https";
import { MetadataError } from "@dcpjs/core";
import { displayUrl } from "./http-errors.js";
import { type AnswerBody, DRAIN_BYTES, type HttpAnswer, type HttpTransport } from "./http-transport.js";
import { pump } from "./node-body.js";

/** A body read from Node's `IncomingMessage`. */
class NodeBody implements AnswerBody {
  constructor(readonly message: IncomingMessage) {}

  pump(
    skip: number,
    want: number,
    sink: (chunk: Uint8Array) => void,
    touch: () => void,
    exact?: boolean,
  ): Promise<number> {
    return pump(this.message, skip, want, sink, touch, exact);
  }

  discard(length: number | undefined): void {
    if (this.message.complete || (length !== undefined && length <= DRAIN_BYTES)) this.message.resume();
    else this.message.destroy();
  }

  async text(maxBytes: number, url: string): Promise<string> {
    const parts: Buffer[] = [];
    let bytes = 0;
    for await (const part of this.message) {
      bytes += (part as Buffer).byteLength;
      if (bytes > maxBytes) {
        this.message.destroy();
        throw new MetadataError(`Expected at most ${maxBytes} bytes from ${displayUrl(url)}, got more`);
      }
      parts.push(part as Buffer);
    }
    return Buffer.concat(parts).toString("utf8");
  }
}

/**
 * Sends one request over node:http / node:https; redirects are not followed (the backend does, as
 * `redirect: "manual"`).
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
        body: new NodeBody(res),
      });
    });
    req.once("error", reject);
    req.end();
  });
}

/**
 * The transport over Node's own client (node:http / node:https), the default under Node: each body
 * chunk is copied by the caller straight into its destination, on the thread that reads the socket.
 */
export const nodeTransport: HttpTransport = { send };

/** The transport used when {@link HttpOptions.transport} is not given, under Node. */
export const defaultTransport: HttpTransport = nodeTransport;

function headersOf(raw: IncomingHttpHeaders): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(raw))
    if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(", ") : value);
  return headers;
}
