import { spawn } from "node:child_process";

/**
 * Runs a TypeScript script of the tests in a fresh Node process (tsx, the `@dcpjs/source`
 * condition) and returns the JSON report it prints as its last stdout line — for measurements a
 * test process must not disturb (RSS over many rounds).
 *
 * @param script - the script's path.
 * @param args - its arguments.
 * @param nodeFlags - Node flags before the script (e.g. `--expose-gc`).
 * @throws an `Error` with the child's stderr when it exits non-zero or prints no report.
 */
export function runChildReport<T>(
  script: string,
  args: readonly string[],
  nodeFlags: readonly string[] = [],
): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [...nodeFlags, "--import", "tsx", "--conditions=@dcpjs/source", script, ...args],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => {
      out += String(d);
    });
    child.stderr.on("data", (d) => {
      err += String(d);
    });
    child.once("error", reject);
    child.once("exit", (code, signal) => {
      const line = out.trim().split("\n").at(-1);
      if (code !== 0 || !line) reject(new Error(`child exited (${code ?? signal}): ${err}`));
      else resolve(JSON.parse(line) as T);
    });
  });
}
