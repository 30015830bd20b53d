import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);

/**
 * Evicts files from the page cache: `drop_caches` when writable (root), else `dd iflag=nocache`
 * per file. Returns how it was done, for the report.
 *
 * @param files - the files to evict.
 */
export async function dropCaches(files: readonly string[]): Promise<string> {
  await run("sync");
  try {
    await writeFile("/proc/sys/vm/drop_caches", "3");
    return "cold (drop_caches)";
  } catch {
    for (const f of files) await run("dd", [`if=${f}`, "iflag=nocache", "count=0"]);
    return "cold (dd iflag=nocache per file)";
  }
}

/** Whether Debian's python3.11 can import a module. */
export async function pythonHas(module: string): Promise<boolean> {
  return run(DEBIAN_PYTHON, ["-c", `import ${module}`]).then(
    () => true,
    () => false,
  );
}

/** Debian's python3.11, where `apt-get install python3-torch` puts torch 1.13. */
export const DEBIAN_PYTHON = "/usr/bin/python3.11";

const ENSURE_VENV = fileURLToPath(
  new URL("../../../test/support/python/ensure-torch-venv.sh", import.meta.url),
);

/**
 * The python of the cached venv with torch 2.13 (CPU), installed from the machine's local wheels
 * when missing (test/support/python/ensure-torch-venv.sh), or undefined when that fails.
 */
export async function torchVenvPython(): Promise<string | undefined> {
  return run("bash", [ENSURE_VENV], { maxBuffer: 16 << 20, timeout: 600_000 }).then(
    ({ stdout }) => `${stdout.trim().split("\n").at(-1)}/bin/python`,
    () => undefined,
  );
}

/**
 * Runs a Python peer script and parses the last JSON line it prints.
 *
 * @param script - the script's path.
 * @param args - its arguments.
 * @param env - extra environment.
 * @param python - the interpreter. @default {@link DEBIAN_PYTHON}
 */
export async function runPython<T>(
  script: string,
  args: readonly string[],
  env: Record<string, string> = {},
  python: string = DEBIAN_PYTHON,
): Promise<T> {
  const { stdout } = await run(python, [script, ...args], {
    maxBuffer: 64 << 20,
    env: { ...process.env, ...env },
  });
  const line = stdout
    .trim()
    .split("\n")
    .reverse()
    .find((l) => l.startsWith("{"));
  if (!line) throw new Error(`${script} printed no JSON: ${stdout}`);
  return JSON.parse(line) as T;
}
