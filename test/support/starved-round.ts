import { spawnTs } from "./child.js";
import { starveCpu } from "./cpu-starve.js";

/** How one CPU-starved child process ended. */
export interface StarvedRound {
  /** Its exit code (1: an uncaught exception), or its signal, or "timeout" when it was killed. */
  readonly exit: string;
  /** Its last stdout line: "ok", "failed <CODES> | <message>" or "mismatch". */
  readonly result: string;
  /** Its stderr (an uncaught exception's stack lands here). */
  readonly stderr: string;
}

/**
 * Runs test/support/s3-round-child.ts (a save to `uri` through `endpoint`, and with `load` its
 * loads compared byte for byte) in a child process held to ~25 % of the CPU by
 * {@link starveCpu}; it is killed after `timeoutMs`.
 *
 * @param uri - the checkpoint's `s3://` URI.
 * @param endpoint - the S3 endpoint the child uses (a fault proxy).
 * @param mode - `save`, or `load` to load it back too.
 * @param timeoutMs - when the child is killed. @default 40,000
 * @param maxAttempts - the child's client `maxAttempts`. @default the library's (10)
 */
export async function runStarvedRound(
  uri: string,
  endpoint: string,
  mode: "save" | "load",
  timeoutMs = 40_000,
  maxAttempts?: number,
): Promise<StarvedRound> {
  const child = spawnTs("s3-round-child.ts", [
    uri,
    endpoint,
    mode,
    ...(maxAttempts ? [String(maxAttempts)] : []),
  ]);
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d) => {
    stdout += String(d);
  });
  child.stderr!.on("data", (d) => {
    stderr += String(d);
  });
  const starvation = starveCpu(child.pid!, { duty: 0.25, periodMs: 100 });
  let timedOut = false;
  const killer = setTimeout(() => {
    timedOut = true;
    starvation.stop();
    child.kill("SIGKILL");
  }, timeoutMs);
  const exit = await new Promise<string>((resolve) =>
    child.once("exit", (code, signal) => resolve(String(code ?? signal))),
  );
  clearTimeout(killer);
  starvation.stop();
  const lines = stdout.trim().split("\n");
  return { exit: timedOut ? "timeout" : exit, result: lines[lines.length - 1] ?? "", stderr };
}
