import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

/** Options of {@link browserLoad}: the checkpoint's shape and the requests in flight. */
export interface BrowserLoadOptions {
  /** Tensors in the checkpoint (besides small ones). */
  readonly tensors: number;
  /** MiB per tensor (no tensor over 1 GiB, as issue #27's bound). */
  readonly tensorMib: number;
  /** Repetitions (best of N). */
  readonly reps: number;
  /** Requests in flight, dcpjs's and plain fetch's. */
  readonly connections: number;
}

/**
 * `pnpm bench browser-load`: a dcpjs checkpoint loaded in Debian's Chromium over loopback HTTP
 * with `@dcpjs/http`'s fetch transport, against plain `fetch` of the same bytes with the same
 * parallelism, with the page's memory above the target tensors — the page work lives in
 * test/browser/http-load-bench.ts (it shares the browser tests' page), run here as a child.
 */
export function browserLoad(o: BrowserLoadOptions): Promise<void> {
  const script = fileURLToPath(new URL("../../../test/browser/http-load-bench.ts", import.meta.url));
  const args = [
    "--import",
    "tsx",
    "--conditions=@dcpjs/source",
    script,
    `--tensors=${o.tensors}`,
    `--tensor-mib=${o.tensorMib}`,
    `--reps=${o.reps}`,
    `--connections=${o.connections}`,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: "inherit" });
    child.on("error", reject);
    child.on("exit", (code) =>
      code === 0 ? resolve() : reject(new Error(`Expected the browser-load run to exit 0, got ${code}`)),
    );
  });
}
