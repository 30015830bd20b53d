import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

/** Spawns a TypeScript file of test/support as a real Node process (tsx, package sources). */
export function spawnTs(file: string, args: readonly string[]): ChildProcess {
  const path = fileURLToPath(new URL(file, import.meta.url));
  return spawn(process.execPath, ["--import", "tsx", "--conditions=@dcpjs/source", path, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
}

/** Resolves with the first stdout line of `child` that matches, or rejects when it exits first. */
export function waitForLine(child: ChildProcess, pattern: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffered = "";
    let stderr = "";
    child.stderr?.on("data", (d) => {
      stderr += String(d);
    });
    child.stdout?.on("data", (d) => {
      buffered += String(d);
      const line = buffered.split("\n").find((l) => pattern.test(l));
      if (line) resolve(line);
    });
    child.once("exit", (code, signal) =>
      reject(new Error(`child exited (${code ?? signal}) before ${pattern}: ${stderr}`)),
    );
  });
}

/** Resolves once `child` has exited, with its signal or code. */
export function exited(child: ChildProcess): Promise<string> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null)
      resolve(String(child.signalCode ?? child.exitCode));
    else child.once("exit", (code, signal) => resolve(String(signal ?? code)));
  });
}
