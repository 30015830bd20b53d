import { readFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { extname, join, normalize } from "node:path";

const TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".map": "application/json",
};

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
 * Serves a built demo page folder on loopback (127.0.0.1: a secure context, as OPFS needs).
 *
 * @param dir - the folder (from `buildDemoWeb`).
 * @param options - see {@link ServeDemoWebOptions}.
 */
export async function serveDemoWeb(dir: string, options: ServeDemoWebOptions = {}): Promise<DemoWebServer> {
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    const file = normalize(join(dir, path === "/" ? "index.html" : path));
    if (!file.startsWith(dir)) {
      res.writeHead(403).end();
      return;
    }
    readFile(file).then(
      (body) => {
        if (options.isolated ?? true) {
          res.setHeader("Cross-Origin-Opener-Policy", "same-origin");
          res.setHeader("Cross-Origin-Embedder-Policy", "require-corp");
        }
        res.setHeader("Content-Type", TYPES[extname(file)] ?? "application/octet-stream");
        res.setHeader("Cache-Control", "no-store");
        res.end(body);
      },
      () => res.writeHead(404).end(),
    );
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
