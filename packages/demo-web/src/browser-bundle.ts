import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build, type Plugin } from "esbuild";

/** The repository's root (this package lives in packages/demo-web, its sources and dist one level down). */
const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

/** What this package takes from scripts/browser-bundle.mjs (the repository's browser build of core). */
interface RepositoryBrowserBundle {
  noNodeBuiltins(): Plugin;
  browserConditions(source?: boolean): string[];
}

/** scripts/browser-bundle.mjs, loaded at run time (it is a script of the repository, not a package). */
function repositoryBrowserBundle(): Promise<RepositoryBrowserBundle> {
  return import(
    pathToFileURL(join(ROOT, "scripts", "browser-bundle.mjs")).href
  ) as Promise<RepositoryBrowserBundle>;
}

/**
 * The `browser` field of the package a file belongs to (the nearest package.json above it), or
 * undefined; cached per folder.
 */
async function browserFieldOf(file: string, cache: Map<string, Record<string, unknown> | undefined>) {
  let dir = dirname(file);
  const seen: string[] = [];
  for (;;) {
    if (cache.has(dir)) break;
    seen.push(dir);
    const manifest = await readFile(join(dir, "package.json"), "utf8").then(
      (text) => JSON.parse(text) as { browser?: unknown },
      () => undefined,
    );
    if (manifest !== undefined) {
      const field =
        typeof manifest.browser === "object" && manifest.browser !== null ? manifest.browser : undefined;
      cache.set(dir, field as Record<string, unknown> | undefined);
      break;
    }
    const parent = dirname(dir);
    if (parent === dir) {
      cache.set(dir, undefined);
      break;
    }
    dir = parent;
  }
  const found = cache.get(dir);
  for (const d of seen) cache.set(d, found);
  return found;
}

/**
 * An esbuild plugin, put before `noNodeBuiltins`, that lets through a Node built-in the importing
 * package's own `browser` field maps to `false` (tfjs-core's `util`, seedrandom's `crypto`): it
 * becomes an empty module, so nothing of Node is in the bundle. Any other built-in is left to
 * `noNodeBuiltins`, which fails the build.
 */
export function browserFieldDisabled(): Plugin {
  const cache = new Map<string, Record<string, unknown> | undefined>();
  return {
    name: "browser-field-disabled",
    setup(b) {
      b.onResolve({ filter: /^[a-z_:/]+$/ }, async (args) => {
        if (args.importer === "") return undefined;
        const field = await browserFieldOf(args.importer, cache);
        return field?.[args.path] === false
          ? { path: args.path, namespace: "browser-field-disabled" }
          : undefined;
      });
      b.onLoad({ filter: /.*/, namespace: "browser-field-disabled" }, () => ({ contents: "", loader: "js" }));
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
 * Bundles a page's script with esbuild: one ESM file for the `browser` platform, the workspace's
 * packages from their sources with the `browser` condition (core's browser platform), and the
 * repository's `noNodeBuiltins` (scripts/browser-bundle.mjs) failing the build on a Node built-in —
 * after {@link browserFieldDisabled}, which lets third-party packages' `browser: false` mappings be.
 *
 * @param options - see {@link BundleForBrowserOptions}.
 * @returns the bundle's inputs (paths relative to the working directory), for checks.
 * @throws esbuild's build failure, naming a Node built-in that would be bundled and its importer.
 */
export async function bundleForBrowser(options: BundleForBrowserOptions): Promise<string[]> {
  const { noNodeBuiltins, browserConditions } = await repositoryBrowserBundle();
  const result = await build({
    entryPoints: [options.entry],
    outfile: options.outfile,
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    conditions: browserConditions(true),
    minify: options.minify ?? false,
    alias: { ...options.alias },
    nodePaths: [...(options.nodePaths ?? [])],
    sourcemap: true,
    metafile: true,
    logLevel: "silent",
    plugins: [browserFieldDisabled(), noNodeBuiltins()],
  });
  return Object.keys(result.metafile.inputs);
}
