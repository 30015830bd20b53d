import { open, stat } from "node:fs/promises";
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { extname, join, normalize } from "node:path";

const TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".map": "application/json",
};

/** `bytes=A-B`, `bytes=A-` or `bytes=-N` of a file of `size` bytes: the range, or "unsatisfiable", or undefined (no Range). */
function byteRange(
  header: string | undefined,
  size: number,
): { start: number; end: number } | "unsatisfiable" | undefined {
  const m = header === undefined ? null : /^bytes=(\d*)-(\d*)$/.exec(header);
  if (!m || (m[1] === "" && m[2] === "")) return undefined;
  const start = m[1] === "" ? Math.max(0, size - Number(m[2])) : Number(m[1]);
  const end = m[1] === "" || m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  return start > end || start >= size ? "unsatisfiable" : { start, end };
}

/** A running {@link serveDemoWeb}. */
export interface DemoWebServer {
  /** The page's URL, e.g. `http://127.0.0.1:PORT/`. */
  readonly url: string;
  /** Stops the server. */
  close(): Promise<void>;
}

/** Options of {@link serveDemoWeb}. */
export interface ServeDemoWebOptions {
  /** The port. @default a free one */
  readonly port?: number;
  /**
   * Send `Cross-Origin-Opener-Policy: same-origin` and `Cross-Origin-Embedder-Policy:
   * require-corp`, so that the page is cross-origin isolated (`SharedArrayBuffer`). @default true
   */
  readonly isolated?: boolean;
}

/**
 * Sends a file, or the one byte range asked for (206, as the HTTP backend's ranged reads need),
 * with `ETag`/`Last-Modified` (the backend pins a file's version by them) and no caching.
 * @throws when the file cannot be opened (the caller answers 404).
 */
async function send(
  file: string,
  range: string | undefined,
  res: ServerResponse,
  isolated: boolean,
): Promise<void> {
  const info = await stat(file);
  if (!info.isFile()) throw new Error(`Expected a file, got ${file}`);
  if (isolated) {
    res.setHeader("Cross-Origin-Opener-Policy", "same-origin");
    res.setHeader("Cross-Origin-Embedder-Policy", "require-corp");
  }
  res.setHeader("Content-Type", TYPES[extname(file)] ?? "application/octet-stream");
  res.setHeader("Cache-Control", "no-store");
  res.setHeader("Accept-Ranges", "bytes");
  res.setHeader("ETag", `"${info.size.toString(16)}-${Math.floor(info.mtimeMs).toString(16)}"`);
  res.setHeader("Last-Modified", info.mtime.toUTCString());
  const asked = byteRange(range, info.size);
  if (asked === "unsatisfiable") {
    res.writeHead(416, { "Content-Range": `bytes */${info.size}` }).end();
    return;
  }
  const { start, end } = asked ?? { start: 0, end: info.size - 1 };
  res.setHeader("Content-Length", String(Math.max(0, end - start + 1)));
  if (asked) res.setHeader("Content-Range", `bytes ${start}-${end}/${info.size}`);
  res.writeHead(asked ? 206 : 200);
  if (end < start) {
    res.end();
    return;
  }
  const handle = await open(file);
  const body = handle.createReadStream({ start, end });
  body.pipe(res);
  await new Promise<void>((resolve) => body.once("close", resolve));
}

/**
 * Serves a built demo page folder on loopback (127.0.0.1: a secure context, as OPFS needs), with
 * byte ranges, so that a dcpjs checkpoint put in the folder loads into the page over HTTP.
 *
 * @param dir - the folder (from `buildDemoWeb`).
 * @param options - see {@link ServeDemoWebOptions}.
 */
export async function serveDemoWeb(dir: string, options: ServeDemoWebOptions = {}): Promise<DemoWebServer> {
  const server: Server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
    const file = normalize(join(dir, path === "/" ? "index.html" : path));
    if (!file.startsWith(dir)) {
      res.writeHead(403).end();
      return;
    }
    send(file, req.headers.range, res, options.isolated ?? true).catch(() => {
      if (!res.headersSent) res.writeHead(404);
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
