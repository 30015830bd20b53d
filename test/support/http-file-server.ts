// A small loopback HTTP server that serves a folder as a static file server does (Range, ETag,
// Last-Modified, If-Match, If-Range), emulates the Hugging Face Hub's resolve → CDN redirect, and
// injects faults on demand: a server that ignores Range, 503 + Retry-After, a broken body, a stall.
import { createReadStream } from "node:fs";
import { open, readdir, stat } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join, normalize } from "node:path";
import { afterEach } from "vitest";

/** One request the server saw. */
export interface SeenRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingMessage["headers"];
  /** The status answered. */
  status: number;
}

/** A fault for the next request whose path matches. */
export type Fault =
  | { readonly kind: "status"; readonly status: number; readonly retryAfter?: string }
  /** Sends the headers and this many body bytes, then destroys the socket. */
  | { readonly kind: "truncate"; readonly afterBytes: number }
  /** Sends the body with its middle byte inverted (damage in transit). */
  | { readonly kind: "flip" }
  /** Sends the headers, then nothing. */
  | { readonly kind: "stall" }
  /** Destroys the socket before answering. */
  | { readonly kind: "reset" };

/** Options of {@link startHttpFileServer}. */
export interface HttpFileServerOptions {
  /** The folder served at `/`. */
  readonly root: string;
  /** Answer ranged GETs with 200 and the whole file. @default false */
  readonly ignoreRange?: boolean;
  /**
   * Emulate the Hub: `/{org}/{repo}/resolve/{rev}/{file}` answers 302 to
   * `{cdnOrigin}/cdn/{org}/{repo}/{file}` with `X-Repo-Commit: commit`; `/cdn/…` serves the folder's `{org}/{repo}/{file}`.
   */
  readonly hub?: { readonly commit: string; cdnOrigin?: string; readonly revisions?: readonly string[] };
  /** Serve the folder under `/cdn/` too (the CDN origin of a {@link HttpFileServerOptions.hub} on another server). @default false */
  readonly cdn?: boolean;
  /** Answer at most this many bytes of a range (as CDNs that cap a range's length). @default no cap */
  readonly maxRangeBytes?: number;
  /** Leave out ETag (then Last-Modified and length identify a file). @default false */
  readonly noEtag?: boolean;
}

/** A running {@link startHttpFileServer}. */
export interface HttpFileServer {
  /** `http://127.0.0.1:PORT`. */
  readonly origin: string;
  /** Every request, in order of arrival. */
  readonly requests: SeenRequest[];
  /** Requests being answered right now. */
  inFlight(): number;
  /** The most requests answered at once so far. */
  peakInFlight(): number;
  /** Queues a fault for the next `times` requests whose path contains `match`, after `after` such requests went through. */
  fault(match: string, fault: Fault, times?: number, after?: number): void;
  /** Changes `ignoreRange` on the fly. */
  setIgnoreRange(on: boolean): void;
  /** Called before a file is served (e.g. to replace it mid-load). */
  beforeServe: ((path: string) => Promise<void> | void) | undefined;
  close(): Promise<void>;
}

/**
 * Starts the server on 127.0.0.1 and a free port.
 * @param options - see {@link HttpFileServerOptions}.
 */
export async function startHttpFileServer(options: HttpFileServerOptions): Promise<HttpFileServer> {
  const requests: SeenRequest[] = [];
  const faults: { match: string; fault: Fault; times: number; after: number }[] = [];
  let ignoreRange = options.ignoreRange ?? false;
  let active = 0;
  let peak = 0;
  const handle: HttpFileServer = {
    origin: "",
    requests,
    inFlight: () => active,
    peakInFlight: () => peak,
    fault: (match, fault, times = 1, after = 0) => faults.push({ match, fault, times, after }),
    setIgnoreRange: (on) => {
      ignoreRange = on;
    },
    beforeServe: undefined,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };

  async function serve(req: IncomingMessage, res: ServerResponse, seen: SeenRequest): Promise<void> {
    const url = new URL(req.url ?? "/", "http://x");
    let path = decodeURIComponent(url.pathname);
    const hub = options.hub;
    if (hub) {
      const api = /^\/api\/models\/([^/]+)\/([^/]+)\/tree\/([^/]+)(?:\/(.*))?$/.exec(path);
      if (api)
        return tree(
          res,
          seen,
          api[1]!,
          api[2]!,
          api[4] ?? "",
          Number(url.searchParams.get("cursor") ?? 0),
          req,
        );
      const m = /^\/([^/]+)\/([^/]+)\/resolve\/([^/]+)\/(.*)$/.exec(path);
      if (m) {
        const [, org, repo, rev, file] = m;
        const known = [hub.commit, ...(hub.revisions ?? ["main"])];
        if (!known.includes(rev!)) return end(res, seen, 404);
        res.setHeader("x-repo-commit", hub.commit);
        res.setHeader(
          "location",
          `${hub.cdnOrigin ?? ""}/cdn/${org}/${repo}/${file!.split("/").map(encodeURIComponent).join("/")}`,
        );
        return end(res, seen, 302);
      }
    }
    if ((hub || options.cdn) && path.startsWith("/cdn/")) path = path.slice(4);
    const fault = takeFault(path, (f) => f.kind === "status" || f.kind === "reset");
    if (fault?.kind === "reset") {
      req.socket.destroy();
      return;
    }
    if (fault?.kind === "status") {
      if (fault.retryAfter !== undefined) res.setHeader("retry-after", fault.retryAfter);
      return end(res, seen, fault.status);
    }
    await handle.beforeServe?.(path);
    const file = join(options.root, normalize(path));
    const info = await stat(file).catch(() => undefined);
    if (!info?.isFile()) return end(res, seen, 404);
    const etag = `"${Math.floor(info.mtimeMs).toString(16)}-${info.size.toString(16)}"`;
    const lastModified = new Date(info.mtimeMs).toUTCString();
    if (!options.noEtag) res.setHeader("etag", etag);
    res.setHeader("last-modified", lastModified);
    res.setHeader("accept-ranges", ignoreRange ? "none" : "bytes");
    const ifMatch = req.headers["if-match"];
    if (ifMatch !== undefined && ifMatch !== "*" && (options.noEtag || ifMatch !== etag))
      return end(res, seen, 412);
    const ifUnmodified = req.headers["if-unmodified-since"];
    if (ifUnmodified !== undefined && Date.parse(ifUnmodified) < Math.floor(info.mtimeMs / 1000) * 1000)
      return end(res, seen, 412);
    let start = 0;
    let endByte = info.size - 1;
    let status = 200;
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
    const ifRange = req.headers["if-range"];
    const rangeValid = ifRange === undefined || ifRange === etag || ifRange === lastModified;
    if (range && !ignoreRange && rangeValid) {
      start = Number(range[1]);
      endByte = range[2] === "" ? info.size - 1 : Math.min(Number(range[2]), info.size - 1);
      if (start >= info.size) {
        res.setHeader("content-range", `bytes */${info.size}`);
        return end(res, seen, 416);
      }
      if (options.maxRangeBytes !== undefined) endByte = Math.min(endByte, start + options.maxRangeBytes - 1);
      status = 206;
      res.setHeader("content-range", `bytes ${start}-${endByte}/${info.size}`);
    }
    const length = endByte - start + 1;
    // body faults hit answers with a body longer than they let through
    const bodyFault =
      req.method === "HEAD"
        ? undefined
        : takeFault(
            path,
            (f) =>
              f.kind === "stall" || f.kind === "flip" || (f.kind === "truncate" && length > f.afterBytes),
          );
    res.setHeader("content-length", length);
    seen.status = status;
    res.writeHead(status);
    if (req.method === "HEAD" || length === 0) {
      res.end();
      return;
    }
    if (bodyFault?.kind === "stall") {
      res.flushHeaders();
      await new Promise<void>((resolve) => res.on("close", resolve));
      return;
    }
    if (bodyFault?.kind === "flip") {
      const bytes = Buffer.alloc(length);
      const handle = await open(file, "r");
      try {
        await handle.read(bytes, 0, length, start);
      } finally {
        await handle.close();
      }
      bytes[Math.floor(length / 2)]! ^= 0xff;
      res.end(bytes);
      return;
    }
    const limit = bodyFault?.kind === "truncate" ? Math.min(bodyFault.afterBytes, length) : length;
    await new Promise<void>((resolve) => {
      const body = createReadStream(file, { start, end: start + limit - 1 });
      body.pipe(res, { end: bodyFault?.kind !== "truncate" });
      body.on("end", () => {
        if (bodyFault?.kind === "truncate") setImmediate(() => res.destroy());
        resolve();
      });
      body.on("error", () => {
        res.destroy();
        resolve();
      });
      res.on("close", () => {
        body.destroy();
        resolve();
      });
    });
  }

  /** The Hub's tree API over the folder: two entries a page (a `Link` to the next); LFS sizes for safetensors files. */
  async function tree(
    res: ServerResponse,
    seen: SeenRequest,
    org: string,
    repo: string,
    sub: string,
    cursor: number,
    req: IncomingMessage,
  ): Promise<void> {
    const dir = join(options.root, org, repo, normalize(sub));
    const names = (await readdir(dir, { withFileTypes: true }).catch(() => undefined))?.sort((a, b) =>
      a.name < b.name ? -1 : 1,
    );
    if (names === undefined) return end(res, seen, 404);
    const page = await Promise.all(
      names.slice(cursor, cursor + 2).map(async (d) => {
        const path = sub === "" ? d.name : `${sub}/${d.name}`;
        if (d.isDirectory()) return { type: "directory", path, oid: "0" };
        const size = (await stat(join(dir, d.name))).size;
        return d.name.endsWith(".safetensors")
          ? { type: "file", path, size: 134, oid: "0", lfs: { oid: "0", size, pointerSize: 134 } }
          : { type: "file", path, size, oid: "0" };
      }),
    );
    if (cursor + 2 < names.length)
      res.setHeader("link", `<${req.url!.split("?")[0]}?cursor=${cursor + 2}>; rel="next"`);
    res.setHeader("content-type", "application/json");
    seen.status = 200;
    res.writeHead(200);
    res.end(JSON.stringify(page));
  }

  function takeFault(path: string, applies: (fault: Fault) => boolean): Fault | undefined {
    const at = faults.findIndex((f) => path.includes(f.match) && applies(f.fault));
    if (at < 0) return undefined;
    if (faults[at]!.after > 0) {
      faults[at]!.after--;
      return undefined;
    }
    const entry = faults[at]!;
    if (--entry.times <= 0) faults.splice(at, 1);
    return entry.fault;
  }

  const server: Server = createServer((req, res) => {
    const seen: SeenRequest = {
      method: req.method ?? "GET",
      path: req.url ?? "/",
      headers: req.headers,
      status: 0,
    };
    requests.push(seen);
    active++;
    peak = Math.max(peak, active);
    // done when its last byte is handed to the socket (before the client can have read it), or when cut
    let done = false;
    const settle = () => {
      if (!done) active--;
      done = true;
    };
    res.on("finish", settle);
    res.on("close", settle);
    serve(req, res, seen).catch(() => res.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  (handle as { origin: string }).origin = `http://127.0.0.1:${port}`;
  return handle;
}

function end(res: ServerResponse, seen: SeenRequest, status: number): void {
  seen.status = status;
  res.writeHead(status);
  res.end();
}

/**
 * A `serve(options)` for one test file: each server it starts is closed after the test that
 * started it (registers the file's `afterEach`; call it once, at the file's top level).
 */
export function serverPerTest(): (options: HttpFileServerOptions) => Promise<HttpFileServer> {
  const servers: HttpFileServer[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });
  return async (options) => {
    const server = await startHttpFileServer(options);
    servers.push(server);
    return server;
  };
}
