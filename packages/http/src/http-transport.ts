// The seam between the HTTP backend and the client that moves its bytes: Node's own client
// (node-transport.ts, the default under Node) or `fetch` (fetch-transport.ts, the default in
// browsers). The package's `#default-transport` import picks one by the `browser` condition.

/** A response's status line and headers, with its body still to be read. */
export interface HttpAnswer {
  /** The HTTP status. */
  readonly status: number;
  /** The status's reason phrase (the server's, else the standard one). */
  readonly statusText: string;
  /** The response headers. */
  readonly headers: Headers;
  /**
   * The URL that answered: the request's target, or where the transport's own redirects led
   * (fetch in a browser follows them itself).
   */
  readonly url: string;
  /** The body: {@link AnswerBody.pump} it, read it as {@link AnswerBody.text}, or {@link AnswerBody.discard} it. */
  readonly body: AnswerBody;
}

/** A response body, read once by one of its methods. */
export interface AnswerBody {
  /**
   * Reads `want` bytes after skipping `skip`, handing them to `sink` as they arrive; closes the
   * connection when the rest of the body is not wanted.
   * @param skip - bytes dropped first (the offset wanted, in a whole-file 200).
   * @param want - bytes handed to `sink`.
   * @param sink - takes each piece, in order (it copies: the piece may be reused afterwards).
   * @param touch - called on every piece received (resets the stall timer).
   * @param exact - the body should end right after `want` bytes: read it to its end so the
   *   connection is kept for the next request. @default false
   * @returns the bytes delivered (fewer than `want` when the body ended early).
   * @throws what the body's stream failed with; an `Error` when its connection closed before it ended.
   */
  pump(
    skip: number,
    want: number,
    sink: (chunk: Uint8Array) => void,
    touch: () => void,
    exact?: boolean,
  ): Promise<number>;
  /**
   * Drops a body not wanted: a small one is read to its end (the connection is kept), a big one
   * or one of unknown size closes its connection.
   * @param length - its `Content-Length`, if stated (bytes).
   */
  discard(length: number | undefined): void;
  /**
   * Reads a whole (small) body as UTF-8 text.
   * @param maxBytes - the most bytes accepted (bytes).
   * @param url - named in the error.
   * @throws {@link MetadataError} when the body is longer than `maxBytes` (dropped as soon as it is).
   */
  text(maxBytes: number, url: string): Promise<string>;
}

/**
 * How the HTTP backend sends a request ({@link HttpOptions.transport}): one request, with its
 * body left to read. A transport may follow redirects itself (as `fetch` in a browser does); the
 * backend follows the 3xx answers it gets back, Range kept, credentials only to the first origin.
 */
export interface HttpTransport {
  /**
   * Sends one request.
   * @param target - an `http:` or `https:` URL.
   * @param method - `GET` or `HEAD`.
   * @param headers - the request headers.
   * @param signal - aborts the request and its body: nothing of it stays open afterwards.
   * @returns the response, once its headers arrived.
   * @throws what the client throws (a refused or reset connection, an abort: the signal's reason).
   */
  send(
    target: string,
    method: "GET" | "HEAD",
    headers: Readonly<Record<string, string>>,
    signal: AbortSignal,
  ): Promise<HttpAnswer>;
}

/** Bodies up to this size are read to their end when dropped, so their connection is kept (bytes). */
export const DRAIN_BYTES = 64 * 1024;

/** The `Content-Length` of a response, if it states a valid one (bytes). */
export function contentLength(answer: Pick<HttpAnswer, "headers">): number | undefined {
  const value = answer.headers.get("content-length");
  return value === null || !/^\d+$/.test(value) ? undefined : Number(value);
}

/** Drops the body of a response not wanted (see {@link AnswerBody.discard}). */
export function discard(answer: HttpAnswer): void {
  answer.body.discard(contentLength(answer));
}
