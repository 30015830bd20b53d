import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const ENSURE = fileURLToPath(new URL("./python/ensure-torch-venv.sh", import.meta.url));
const ENSURE_113 = fileURLToPath(new URL("./python/ensure-torch113.sh", import.meta.url));

let venv: Promise<string> | undefined;
let debian: Promise<string> | undefined;

/** Debian's python3.11 with torch 1.13 (python3-torch), installed with apt when missing (test/support/python/ensure-torch113.sh). */
export function torch113Python(): Promise<string> {
  debian ??= run("bash", [ENSURE_113], { maxBuffer: 16 << 20, timeout: 1_200_000 }).then(
    ({ stdout }) => stdout.trim().split("\n").at(-1)!,
  );
  return debian;
}

/**
 * The python of a venv with torch 2.13 (CPU), safetensors 0.8 and numpy, installed from the
 * machine's local wheels when missing (test/support/python/ensure-torch-venv.sh; ~50 s once).
 */
export function torchPython(): Promise<string> {
  venv ??= run("bash", [ENSURE], { maxBuffer: 16 << 20, timeout: 600_000 }).then(
    ({ stdout }) => `${stdout.trim().split("\n").at(-1)}/bin/python`,
  );
  return venv;
}

/** Runs a peer script of test/support/python (with torch 2.13, or Debian's 1.13 for `torch113_*`) and returns its JSON line. */
export async function runPeer<T>(script: string, args: readonly string[]): Promise<T> {
  const python = script.startsWith("torch113") ? await torch113Python() : await torchPython();
  const path = fileURLToPath(new URL(`./python/${script}`, import.meta.url));
  const { stdout } = await run(python, [path, ...args], { maxBuffer: 64 << 20, timeout: 300_000 });
  return JSON.parse(stdout.trim().split("\n").at(-1)!) as T;
}
