import { builtinModules } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build, type Plugin } from "esbuild";

const SHIMS = join(dirname(fileURLToPath(import.meta.url)), "..", "src", "shims");

/** Whether a module name is a Node built-in (`fs`, `node:fs`, `fs/promises`, …). */
function isNodeBuiltin(name: string): boolean {
  return name.startsWith("node:") || builtinModules.includes(name);
}

/**
 * Interim stand-ins for what `@dcpjs/core` imports from Node today, until its platform seam (a
 * `browser` export condition, issue #27) makes it bundle as it is: the functions a page calls
 * (`randomUUID`, the CRCs, `setMaxListeners`, buffer limits) get browser versions; modules a page
 * never calls (local files, the read cache, the worker pool) get stubs that throw when used.
 */
const INTERIM: Readonly<Record<string, string>> = {
  "node:crypto": "node-crypto.js",
  "node:buffer": "node-buffer.js",
  "node:events": "node-events.js",
  "@node-rs/crc32": "crc32.js",
  "node:fs": "unavailable.js",
  "node:fs/promises": "unavailable.js",
  "node:path": "unavailable.js",
  "node:os": "unavailable.js",
  piscina: "unavailable.js",
  cacache: "unavailable.js",
  "proper-lockfile": "unavailable.js",
};

/**
 * An esbuild plugin that fails the build on any Node built-in a browser bundle would import,
 * naming it and its importer; a package's own `browser` field mapping a built-in away (tfjs's
 * `util`, seedrandom's `crypto`) is followed, since nothing of Node is then bundled. `@dcpjs/core`'s
 * imports get the interim stand-ins of {@link INTERIM}.
 */
export function noNodeBuiltins(): Plugin {
  return {
    name: "no-node-builtins",
    setup(b) {
      b.onResolve({ filter: /.*/ }, async (args) => {
        if (args.pluginData === "no-node-builtins") return undefined;
        const fromCore = /[/\\]packages[/\\]core[/\\]/.test(args.importer);
        const shim = fromCore ? INTERIM[args.path] : undefined;
        if (shim) return { path: join(SHIMS, shim) };
        if (!isNodeBuiltin(args.path)) return undefined;
        // A `browser` field that maps the built-in to `false` resolves to a disabled (empty) module,
        // in no namespace; an unmapped built-in does not resolve for the browser platform.
        const resolved = await b.resolve(args.path, {
          importer: args.importer,
          resolveDir: args.resolveDir,
          kind: args.kind,
          pluginData: "no-node-builtins",
        });
        if (resolved.errors.length === 0 && !resolved.external && resolved.namespace === "")
          return { path: args.path, namespace: "disabled-builtin" };
        return {
          errors: [
            {
              text: `Expected no Node built-in in a browser bundle, got ${args.path} (from ${args.importer})`,
            },
          ],
        };
      });
      b.onLoad({ filter: /.*/, namespace: "disabled-builtin" }, () => ({
        contents: "module.exports = {};",
        loader: "js",
      }));
    },
  };
}

/** Options of {@link bundleForBrowser}. */
export interface BundleForBrowserOptions {
  /** The entry module (TypeScript or JavaScript). */
  readonly entry: string;
  /** The bundle's path. */
  readonly outfile: string;
  /** Minify. @default false */
  readonly minify?: boolean;
  /** Module names to replace by other modules (esbuild's `alias`), e.g. a test runner for the page. @default none */
  readonly alias?: Readonly<Record<string, string>>;
  /** More folders to resolve bare module names in (esbuild's `nodePaths`). @default none */
  readonly nodePaths?: readonly string[];
}

/**
 * Bundles a page's script with esbuild: ESM, the `browser` platform, the workspace's sources
 * (`@dcpjs/source` condition), {@link noNodeBuiltins}, and `Buffer`/`process` stand-ins injected
 * for `@dcpjs/core` (interim, as {@link INTERIM}).
 *
 * @param options - see {@link BundleForBrowserOptions}.
 * @returns the bundle's inputs (paths relative to the working directory), for checks.
 * @throws esbuild's build failure, naming a Node built-in that would be bundled.
 */
export async function bundleForBrowser(options: BundleForBrowserOptions): Promise<string[]> {
  const result = await build({
    entryPoints: [options.entry],
    outfile: options.outfile,
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    conditions: ["@dcpjs/source"],
    inject: [join(SHIMS, "globals.js")],
    minify: options.minify ?? false,
    alias: { ...options.alias },
    nodePaths: [...(options.nodePaths ?? [])],
    sourcemap: true,
    metafile: true,
    logLevel: "silent",
    plugins: [noNodeBuiltins()],
  });
  return Object.keys(result.metafile.inputs);
}
