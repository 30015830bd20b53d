import { execFile, spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { freePort } from "@dcpjs/demo-kit";
import { ensureDebianPackage } from "./debian-package.js";

const run = promisify(execFile);

/**
 * A Redis server for the tests: `REDIS_URL` when set; otherwise Debian's `redis-server` (installed
 * with apt when missing) on a free loopback port, with no persistence, stopped by PID.
 *
 * @param log - where to say which one.
 * @param options - `own`: always start a server of this caller's own (to pause or kill it), even with REDIS_URL set.
 */
export async function startRedisServer(
  log: (line: string) => void,
  options: { readonly own?: boolean } = {},
): Promise<{ url: string; pid: number; stop(): Promise<void> }> {
  if (process.env.REDIS_URL && !options.own) {
    log(`[redis] using REDIS_URL=${process.env.REDIS_URL}`);
    return { url: process.env.REDIS_URL, pid: 0, stop: async () => {} };
  }
  await ensureDebianPackage(log, ["redis-server", "--version"], "redis-server");
  const dir = await mkdtemp(join(tmpdir(), "dcpjs-redis-"));
  const port = await freePort();
  const pidfile = join(dir, "redis.pid");
  await new Promise<void>((resolve, reject) => {
    const child = spawn(
      "redis-server",
      [
        "--bind",
        "127.0.0.1",
        "--port",
        String(port),
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "yes",
        "--pidfile",
        pidfile,
        "--logfile",
        join(dir, "redis.log"),
        "--dir",
        dir,
      ],
      { stdio: "ignore" },
    );
    child.on("exit", (code) =>
      code === 0 ? resolve() : reject(new Error(`redis-server exited with ${code}`)),
    );
  });
  let pid = 0;
  for (let i = 0; i < 100 && !pid; i++) {
    pid = Number(await readFile(pidfile, "utf8").catch(() => "0"));
    if (!pid) await new Promise((r) => setTimeout(r, 50));
  }
  const url = `redis://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    const ok = await run("redis-cli", ["-p", String(port), "ping"]).then(
      (r) => r.stdout.trim() === "PONG",
      () => false,
    );
    if (ok) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  log(`[redis] redis-server ready at ${url} (pid ${pid})`);
  return {
    url,
    pid,
    stop: async () => {
      if (pid) {
        try {
          process.kill(pid, "SIGTERM");
        } catch {
          // already gone
        }
        // Wait for it to exit (at most 5 s): a server still shutting down writes its log and
        // removes its pidfile in `dir`, and an rm racing it failed with ENOTEMPTY.
        for (let i = 0; i < 100 && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 50));
      }
      await rm(dir, { recursive: true, force: true, maxRetries: 5 });
    },
  };
}

/** Whether a process with this pid exists (signal 0 probes without signalling). */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
