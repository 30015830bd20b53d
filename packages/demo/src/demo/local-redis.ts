import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { CheckpointError } from "@dcpjs/core";
import { freePort } from "@dcpjs/demo-kit";

/**
 * Starts a throw-away `redis-server` (no persistence) on a free loopback port for a demo run.
 *
 * @returns its URL and a function that stops it.
 * @throws {@link CheckpointError} `NOT_FOUND` when `redis-server` is not installed.
 */
export async function startLocalRedis(): Promise<{ url: string; stop(): void }> {
  const port = await freePort();
  const child = spawn(
    "redis-server",
    ["--bind", "127.0.0.1", "--port", String(port), "--save", "", "--appendonly", "no"],
    { stdio: "ignore" },
  );
  await new Promise<void>((resolve, reject) => {
    child.once("error", (cause) =>
      reject(
        new CheckpointError(
          "NOT_FOUND",
          "Expected redis-server on the PATH for --procs (or pass --redis URL / set DCPJS_REDIS_URL)",
          { cause },
        ),
      ),
    );
    const probe = async () => {
      for (let i = 0; i < 100; i++) {
        const ok = await new Promise<boolean>((r) => {
          const s = createServer();
          s.once("error", () => r(true));
          s.listen(port, "127.0.0.1", () => s.close(() => r(false)));
        });
        if (ok) return resolve();
        await new Promise((r) => setTimeout(r, 50));
      }
      reject(new CheckpointError("IO_ERROR", `redis-server did not listen on port ${port}`));
    };
    child.once("spawn", () => void probe());
  });
  return { url: `redis://127.0.0.1:${port}`, stop: () => child.kill("SIGTERM") };
}
