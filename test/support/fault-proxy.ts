import { createServer, type IncomingMessage, request, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

/**
 * The faults the proxy injects into one request:
 * - `500`, `503`: answers with that status (503 as S3's `SlowDown`) without forwarding;
 * - `reset-before`: closes the connection (RST) before any response;
 * - `lost-response`: forwards the request, then closes the connection instead of answering
 *   (the server did the work, the client never hears of it);
 * - `reset-mid`: forwards, sends the headers and half the body, then RST;
 * - `truncate`: as `reset-mid`, but ends the connection cleanly (FIN) after half the body;
 * - `short`: a complete response whose Content-Length and body are cut to half ("short 200");
 * - `long`: a complete response with 16 extra bytes and a Content-Length that says so;
 * - `flip`: one body byte flipped, length unchanged;
 * - `stall`: never answers (the connection stays open until the client gives up).
 * Body faults apply to GET responses with a body; for others the request passes unchanged.
 * Not in {@link FAULTS} (the matrix of faults.test.ts), for requests that carry a body:
 * - `reset-mid-request`: takes half the request body (an UploadPart's, a PUT's), then RST while
 *   the client is still sending; a request without a body is reset before any response;
 * - `reset-after`: forwards, sends the whole response, then RST (a keep-alive connection the
 *   server drops abruptly right after answering).
 * Not in {@link FAULTS} either, for plain HTTP servers (in {@link HTTP_FAULTS}):
 * - `503-retry-after`: answers 503 with a `Retry-After` header (seconds, see
 *   {@link FaultProxyOptions.retryAfterSeconds}) without forwarding, as a CDN asking to back off;
 * - `ignore-range`: forwards a ranged GET without its `Range` and `If-Range` headers, so the
 *   server answers 200 with the whole file (a server that ignores Range).
 */
export type Fault =
  | "500"
  | "503"
  | "reset-before"
  | "lost-response"
  | "reset-mid"
  | "truncate"
  | "short"
  | "long"
  | "flip"
  | "stall"
  | "reset-mid-request"
  | "reset-after"
  | "503-retry-after"
  | "ignore-range";

/** Every fault kind. */
export const FAULTS: readonly Fault[] = [
  "500",
  "503",
  "reset-before",
  "lost-response",
  "reset-mid",
  "truncate",
  "short",
  "long",
  "flip",
  "stall",
];

/** Every fault kind a plain HTTP server's reader must survive: {@link FAULTS}, a 503 with Retry-After, and a server that ignores Range. */
export const HTTP_FAULTS: readonly Fault[] = [...FAULTS, "503-retry-after", "ignore-range"];

/** Options of {@link startFaultProxy}. */
export interface FaultProxyOptions {
  /** The `Retry-After` of the `503-retry-after` fault, in seconds; default 1. */
  readonly retryAfterSeconds?: number;
}

const BODY_FAULTS = new Set<Fault>(["reset-mid", "truncate", "short", "long", "flip"]);

/** What the proxy knows of a request when deciding its fault. */
export interface ProxiedRequest {
  readonly method: string;
  /** The path and query, e.g. `/bucket/key?uploads`. */
  readonly url: string;
  readonly headers: IncomingMessage["headers"];
}

/** A fault-injecting HTTP proxy in front of a real S3 server. */
export interface FaultProxy {
  /** `http://127.0.0.1:PORT`: use it as the S3 endpoint. */
  readonly endpoint: string;
  /** Requests seen, and faults injected, by kind. */
  readonly stats: { requests: number; faults: Partial<Record<Fault, number>> };
  /** Sets what to inject from now on (undefined: pass the request through). */
  setFault(decide: (req: ProxiedRequest) => Fault | undefined): void;
  /** Stops the proxy and closes every connection. */
  close(): Promise<void>;
}

/**
 * Starts a fault-injecting proxy on 127.0.0.1 in front of `target` (an `http://host:port` S3
 * endpoint or plain HTTP server). Requests are forwarded unchanged (the Host header too, so SigV4
 * signatures hold).
 *
 * @param target - the real server's endpoint.
 * @param options - see {@link FaultProxyOptions}.
 */
export async function startFaultProxy(target: string, options: FaultProxyOptions = {}): Promise<FaultProxy> {
  const upstream = new URL(target);
  let decide: (req: ProxiedRequest) => Fault | undefined = () => undefined;
  const stats: FaultProxy["stats"] = { requests: 0, faults: {} };
  const sockets = new Set<Socket>();

  const drain = (req: IncomingMessage) =>
    new Promise<void>((resolve) => {
      req.resume();
      req.on("end", resolve);
      req.on("error", () => resolve());
    });

  const forward = (req: IncomingMessage, headers: IncomingMessage["headers"] = req.headers) =>
    new Promise<{ status: number; headers: IncomingMessage["headers"]; body: Buffer }>((resolve, reject) => {
      const out = request(
        {
          host: upstream.hostname,
          port: upstream.port,
          method: req.method,
          path: req.url,
          headers,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () =>
            resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }),
          );
          res.on("error", reject);
        },
      );
      out.on("error", reject);
      req.pipe(out);
    });

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    stats.requests++;
    const fault = decide({ method: req.method!, url: req.url!, headers: req.headers });
    const count = () => {
      stats.faults[fault!] = (stats.faults[fault!] ?? 0) + 1;
    };
    if (fault === "stall") {
      count();
      req.resume(); // take the body, never answer
      return;
    }
    if (fault === "reset-mid-request") {
      count();
      const length = Number(req.headers["content-length"] ?? 0);
      let seen = 0;
      const reset = () => req.socket.resetAndDestroy();
      if (!(length > 1)) {
        await drain(req);
        reset();
        return;
      }
      req.on("data", (chunk: Buffer) => {
        seen += chunk.length;
        if (seen >= length / 2 && !req.socket.destroyed) reset();
      });
      req.on("error", () => {});
      return;
    }
    if (fault === "500" || fault === "503") {
      count();
      await drain(req);
      const code = fault === "503" ? "SlowDown" : "InternalError";
      const xml = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>injected</Message></Error>`;
      res.writeHead(Number(fault), {
        "content-type": "application/xml",
        "content-length": Buffer.byteLength(xml),
      });
      res.end(xml);
      return;
    }
    if (fault === "503-retry-after") {
      count();
      await drain(req);
      res.writeHead(503, {
        "retry-after": String(options.retryAfterSeconds ?? 1),
        "content-type": "text/plain",
        "content-length": "8",
      });
      res.end("injected");
      return;
    }
    if (fault === "reset-before") {
      count();
      await drain(req);
      req.socket.resetAndDestroy();
      return;
    }
    let answer: Awaited<ReturnType<typeof forward>>;
    const ignoreRange = fault === "ignore-range" && req.method === "GET" && req.headers.range !== undefined;
    if (ignoreRange) count();
    try {
      if (ignoreRange) {
        const { range: _, "if-range": __, ...rest } = req.headers;
        answer = await forward(req, rest);
      } else answer = await forward(req);
    } catch {
      req.socket.destroy();
      return;
    }
    if (fault === "lost-response") {
      count();
      req.socket.resetAndDestroy();
      return;
    }
    if (fault === "reset-after") {
      count();
      res.writeHead(answer.status, answer.headers);
      res.end(answer.body, () => req.socket.resetAndDestroy());
      return;
    }
    const { status, headers } = answer;
    let body = answer.body;
    const bodyFault =
      fault &&
      BODY_FAULTS.has(fault) &&
      req.method === "GET" &&
      (status === 200 || status === 206) &&
      body.length > 1
        ? fault
        : undefined;
    const send = (bytes: Buffer, length = bytes.length) => {
      const h = { ...headers, "content-length": String(length) };
      delete h["transfer-encoding"];
      res.writeHead(status, h);
      return bytes;
    };
    if (!bodyFault) {
      res.writeHead(status, headers); // unchanged: HEAD answers announce a length they do not send
      res.end(body);
      return;
    }
    count();
    const half = body.subarray(0, Math.floor(body.length / 2));
    switch (bodyFault) {
      case "reset-mid":
        res.write(send(half, body.length), () => req.socket.resetAndDestroy());
        return;
      case "truncate":
        res.write(send(half, body.length), () => req.socket.end());
        return;
      case "short":
        res.end(send(half));
        return;
      case "long":
        res.end(send(Buffer.concat([body, Buffer.alloc(16, 0x5a)])));
        return;
      case "flip":
        body = Buffer.from(body);
        body[Math.floor(Math.random() * body.length)]! ^= 0x01;
        res.end(send(body));
        return;
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch(() => req.socket.destroy());
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    stats,
    setFault(d) {
      decide = d;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
