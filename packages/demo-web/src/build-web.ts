import { copyFile, mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { bundleForBrowser } from "./browser-bundle.js";

/** The package's folder. */
const PACKAGE = join(dirname(fileURLToPath(import.meta.url)), "..");

/** Where {@link buildDemoWeb} puts the page by default: `packages/demo-web/dist/web`. */
export const DEMO_WEB_DIR = join(PACKAGE, "dist", "web");

/**
 * Builds the demo page: `index.html`, `demo.js` — the page's script bundled for the browser by
 * {@link bundleForBrowser} (which fails on a Node built-in) — and core's worker script beside it,
 * `browser-offload-worker.js`.
 *
 * @param outDir - where the page goes. @default {@link DEMO_WEB_DIR}
 * @returns the folder.
 */
export async function buildDemoWeb(outDir: string = DEMO_WEB_DIR): Promise<string> {
  await mkdir(outDir, { recursive: true });
  await bundleForBrowser({
    entry: join(PACKAGE, "src", "page", "main.ts"),
    outfile: join(outDir, "demo.js"),
  });
  // Core's worker script for checksums, copies and casts over shared memory in a cross-origin
  // isolated page: the bundle asks for it beside itself (`new URL(…, import.meta.url)`).
  await bundleForBrowser({
    entry: join(PACKAGE, "..", "core", "src", "platform", "browser-offload-worker.js"),
    outfile: join(outDir, "browser-offload-worker.js"),
  });
  await copyFile(join(PACKAGE, "src", "page", "index.html"), join(outDir, "index.html"));
  return outDir;
}
