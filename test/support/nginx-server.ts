import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "@dcpjs/demo-kit";
import { ensureDebianPackage } from "./debian-package.js";

/** Debian's nginx binary (packages nginx-light / nginx-core). */
export const NGINX = "/usr/sbin/nginx";

/**
 * The commit the Hub-like `resolve/{rev}/` answers with in `X-Repo-Commit` when `rev` is a branch
 * or tag (a 40-hex `rev` is answered with itself), as the Hub resolves a revision to its commit.
 */
export const HUB_COMMIT = "0123456789abcdef0123456789abcdef01234567";

/** One line of the access log (written as JSON by the generated config). */
export interface AccessLine {
  readonly method: string;
  /** The request's path and query as sent, e.g. `/cdn/org/repo/model.safetensors`. */
  readonly uri: string;
  readonly status: number;
  /** Body bytes sent to the client (`$body_bytes_sent`). */
  readonly bytes: number;
  /** The request's `Range` header, `""` when none. */
  readonly range: string;
  readonly ifMatch: string;
  readonly ifRange: string;
  /** The request's `Authorization` header, `""` when none. */
  readonly authorization: string;
  /** The response's `ETag`, `""` when none. */
  readonly etag: string;
  /** `hub` (the cross-origin Hub port) or `main` (everything else). */
  readonly server: "main" | "hub";
  /** When the response was sent, in seconds since the epoch (ms resolution, `$msec`). */
  readonly end: number;
  /** How long the request took, in seconds (`$request_time`): it began at `end − seconds`. */
  readonly seconds: number;
}

/** A loopback nginx serving a folder, with the Hub's resolve → CDN redirect. */
export interface NginxServer {
  /**
   * `http://127.0.0.1:PORT`: the files of `root` at their paths, a Hub-like
   * `/{org}/{repo}/resolve/{rev}/{file}` answered by a relative 302 to `/cdn/{org}/{repo}/{file}`
   * (same origin, so a proxy in front keeps seeing the CDN requests), and `/cdn/…`.
   */
  readonly url: string;
  /**
   * `http://127.0.0.1:PORT2`: a second origin with only the Hub's resolve path, answered by an
   * absolute 302 to `{url}/cdn/…` on the other origin, as the Hub redirects to its CDN host.
   */
  readonly hubUrl: string;
  /** The served folder; `{root}/{org}/{repo}/{file}` is what `resolve/{rev}/{file}` serves. */
  readonly root: string;
  /** The access log path. */
  readonly accessLogPath: string;
  /** Every access-log line so far, parsed. */
  accessLog(): Promise<AccessLine[]>;
  /** Stops nginx (by its PID) and removes its folder (the served root too, unless it was given). */
  stop(): Promise<void>;
}

/** What a test file needs of a server started elsewhere (by the global setup): plain data. */
export interface NginxInfo {
  readonly url: string;
  readonly hubUrl: string;
  readonly root: string;
  readonly accessLogPath: string;
}

/** The most requests the server was answering at once, from access-log lines' start and end times. */
export function peakConcurrency(lines: readonly AccessLine[]): number {
  const events = lines.flatMap((l) => [
    [l.end - l.seconds, 1],
    [l.end, -1],
  ]);
  events.sort((a, b) => a[0]! - b[0]! || a[1]! - b[1]!);
  let now = 0;
  let peak = 0;
  for (const [, d] of events) {
    now += d!;
    peak = Math.max(peak, now);
  }
  return peak;
}

/** Parses the access log at `path` (the JSON lines the generated config writes). */
export async function readAccessLog(path: string): Promise<AccessLine[]> {
  const text = await readFile(path, "utf8").catch(() => "");
  return text
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as AccessLine);
}

/** The config: no root paths anywhere (pid, logs, temp folders all under `dir`). */
function config(dir: string, root: string, port: number, hubPort: number): string {
  const resolve = "~^/(?<org>[^/]+)/(?<repo>[^/]+)/resolve/(?<rev>[^/]+)/(?<file>.+)$";
  // Workers of a root master run as `nobody` unless told otherwise, and cannot read a mkdtemp folder.
  const user = process.getuid?.() === 0 ? "user root;" : "";
  return `
${user}
daemon off;
master_process on;
worker_processes 2;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  default_type application/octet-stream;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  absolute_redirect off;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
  log_format dcpjs escape=json '{"method":"$request_method","uri":"$request_uri","status":$status,'
    '"bytes":$body_bytes_sent,"range":"$http_range","ifMatch":"$http_if_match",'
    '"ifRange":"$http_if_range","authorization":"$http_authorization","etag":"$sent_http_etag","server":"$dcpjs_server",'
    '"end":$msec,"seconds":$request_time}';
  access_log ${dir}/access.log dcpjs;
  map $rev $dcpjs_commit {
    "~^[0-9a-f]{40}$" $rev;
    default ${HUB_COMMIT};
  }
  server {
    listen 127.0.0.1:${port};
    set $dcpjs_server main;
    root ${root};
    location ${resolve} {
      if (!-f ${root}/$org/$repo/$file) { return 404; }
      add_header X-Repo-Commit $dcpjs_commit always;
      return 302 /cdn/$org/$repo/$file;
    }
    location /cdn/ {
      alias ${root}/;
    }
  }
  server {
    listen 127.0.0.1:${hubPort};
    set $dcpjs_server hub;
    location ${resolve} {
      if (!-f ${root}/$org/$repo/$file) { return 404; }
      add_header X-Repo-Commit $dcpjs_commit always;
      absolute_redirect on;
      return 302 http://127.0.0.1:${port}/cdn/$org/$repo/$file;
    }
    location / { return 404; }
  }
}
`;
}

/**
 * Starts Debian's nginx (installed with apt when missing, as redis-server.ts does) on free
 * loopback ports with a config generated into a temp folder, serving `root` (default: a new
 * folder inside it). Static files get nginx's own `Range`, strong `ETag` (`"mtime-size"` in hex),
 * `Last-Modified`, `If-Match` (412) and `If-Range` (a whole 200 when it does not match).
 *
 * @param log - where to say what it did.
 * @param options - `root`: the folder to serve.
 */
export async function startNginx(
  log: (line: string) => void,
  options: { readonly root?: string } = {},
): Promise<NginxServer> {
  await ensureDebianPackage(log, [NGINX, "-v"], "nginx-light", { minimal: true });
  const dir = await mkdtemp(join(tmpdir(), "dcpjs-nginx-"));
  const root = options.root ?? join(dir, "root");
  await mkdir(root, { recursive: true });
  await mkdir(join(dir, "tmp"), { recursive: true });
  const [port, hubPort] = [await freePort(), await freePort()];
  const conf = join(dir, "nginx.conf");
  await writeFile(conf, config(dir, root, port, hubPort));
  const child = spawn(NGINX, ["-p", dir, "-e", join(dir, "error.log"), "-c", conf], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (c: Buffer) => {
    stderr += c.toString();
  });
  let exited: number | null | undefined;
  child.on("exit", (code) => {
    exited = code;
  });
  const url = `http://127.0.0.1:${port}`;
  const hubUrl = `http://127.0.0.1:${hubPort}`;
  const stop = async () => {
    if (child.pid && exited === undefined) {
      const gone = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM"); // nginx's fast shutdown; workers exit with the master
      await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
      if (exited === undefined) child.kill("SIGKILL");
    }
    await rm(dir, { recursive: true, force: true, maxRetries: 5 });
  };
  for (let i = 0; ; i++) {
    const up = await Promise.all(
      [url, hubUrl].map((u) =>
        fetch(`${u}/`, { method: "HEAD" }).then(
          () => true,
          () => false,
        ),
      ),
    );
    if (up.every(Boolean)) break;
    if (exited !== undefined || i > 200) {
      const errors = await readFile(join(dir, "error.log"), "utf8").catch(() => "");
      await stop();
      throw new Error(`Expected nginx to answer on ${url}, got exit ${exited}: ${stderr}${errors}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  log(`[nginx] serving ${root} at ${url} (Hub origin ${hubUrl}, pid ${child.pid})`);
  const accessLogPath = join(dir, "access.log");
  return { url, hubUrl, root, accessLogPath, accessLog: () => readAccessLog(accessLogPath), stop };
}
