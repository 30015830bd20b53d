import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
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

/** Whether `/usr/bin/python3.11` can import a module. */
export async function pythonHas(module: string): Promise<boolean> {
  return run("/usr/bin/python3.11", ["-c", `import ${module}`]).then(
    () => true,
    () => false,
  );
}

/**
 * Runs a Python peer script with Debian's python3.11 and parses the last JSON line it prints.
 *
 * @param script - the script's path.
 * @param args - its arguments.
 * @param env - extra environment.
 */
export async function runPython<T>(
  script: string,
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<T> {
  const { stdout } = await run("/usr/bin/python3.11", [script, ...args], {
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
