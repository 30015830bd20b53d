// Bundles dcpjs for browsers with esbuild, and fails on any Node.js built-in the bundle would
// import: the check behind "the browser bundle contains no Node built-in" (issue #27).
//
//   pnpm run build:browser            → packages/core/dist-browser/{core,extend,ops}.js (+ chunks)
//   pnpm run build:browser -- --source  the same from the TypeScript sources (no `pnpm run build`)
//   pnpm run build:browser -- --outdir DIR
//
// Other builds (a demo page, the browser tests) import `bundleForBrowser` / `noNodeBuiltins`.
import { rm } from "node:fs/promises";
import { builtinModules } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

/** The repository's root. */
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

/** What `build:browser` bundles: each public entry of a package that runs in a browser, by its output name. */
export const BROWSER_ENTRIES = {
  core: "@dcpjs/core",
  extend: "@dcpjs/core/extend",
  ops: "@dcpjs/core/ops",
};

/**
 * The Web Worker the browser build of @dcpjs/core starts for large checksums and copies in cross-origin
 * isolated pages, by output name: it must lie beside the bundle's other files under this name
 * (`new URL("./browser-offload-worker.js", import.meta.url)`), so every bundle here includes it.
 */
export const WORKER_ENTRY = { "browser-offload-worker": "@dcpjs/core/browser-offload-worker" };

/** The conditions a browser build resolves package `exports`/`imports` with; `@dcpjs/source` too from the sources. */
export function browserConditions(source = false) {
  return source ? ["browser", "@dcpjs/source"] : ["browser"];
}

const BUILTINS = new Set(builtinModules.flatMap((name) => [name, `node:${name}`]));

/**
 * An esbuild plugin that makes every import of a Node.js built-in an error (`node:*` and the
 * bare names, `fs/promises` included), naming the importing file.
 *
 * @returns {import("esbuild").Plugin}
 */
export function noNodeBuiltins() {
  return {
    name: "no-node-builtins",
    setup(build) {
      build.onResolve({ filter: /^[a-z_:/]+$/ }, (args) => {
        if (!args.path.startsWith("node:") && !BUILTINS.has(args.path)) return undefined;
        return {
          errors: [
            {
              text: `Expected no Node.js built-in in the browser bundle, got "${args.path}" imported by ${args.importer.replace(`${ROOT}/`, "")}`,
            },
          ],
        };
      });
    },
  };
}

/**
 * Bundles entry points for browsers (ESM, code split between entries), and the worker of
 * {@link WORKER_ENTRY} beside them, failing on a Node.js built-in.
 *
 * @param {object} options
 * @param {Record<string, string>} [options.entries] - output name → module (a package path or a file); default {@link BROWSER_ENTRIES}.
 * @param {string} [options.outdir] - where to write; absent: nothing is written (`outputFiles` hold the bundle).
 * @param {boolean} [options.source] - resolve the packages' TypeScript sources (`@dcpjs/source`) instead of their `dist`.
 * @param {boolean} [options.minify] - minify (default false).
 * @returns {Promise<import("esbuild").BuildResult & { metafile: import("esbuild").Metafile }>}
 * @throws esbuild's error (its `errors` name each built-in and its importer) when the bundle would import one.
 */
export async function bundleForBrowser({
  entries = BROWSER_ENTRIES,
  outdir,
  source = false,
  minify = false,
} = {}) {
  return esbuild.build({
    absWorkingDir: ROOT,
    entryPoints: Object.entries({ ...entries, ...WORKER_ENTRY }).map(([out, path]) => ({ in: path, out })),
    bundle: true,
    splitting: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    conditions: browserConditions(source),
    outdir: outdir ?? join(ROOT, "packages/core/dist-browser"),
    write: outdir !== undefined,
    sourcemap: outdir !== undefined,
    minify,
    metafile: true,
    logLevel: "silent",
    plugins: [noNodeBuiltins()],
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const at = args.indexOf("--outdir");
  const outdir = at >= 0 ? args[at + 1] : join(ROOT, "packages/core/dist-browser");
  // The default folder is this script's alone: start it afresh (a folder given is left as it is).
  if (at < 0) await rm(outdir, { recursive: true, force: true });
  try {
    const result = await bundleForBrowser({
      outdir,
      source: args.includes("--source"),
      minify: args.includes("--minify"),
    });
    for (const [file, { bytes }] of Object.entries(result.metafile.outputs))
      if (!file.endsWith(".map")) console.log(`${file}  ${(bytes / 1024).toFixed(0)} KiB`);
  } catch (error) {
    for (const e of error.errors ?? [error]) console.error(e.text ?? String(e));
    process.exit(1);
  }
}
