// The browser build of @dcpjs/http: bundled for the browser (the `browser` condition picks the
// fetch transport), with @dcpjs/core left to its own bundle, it contains no Node built-in.
import { builtinModules } from "node:module";
import { build } from "esbuild";
import { expect, test } from "vitest";

test("@dcpjs/http bundles for the browser with the fetch transport and no Node built-in", async () => {
  const builtins = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));
  const imported = new Set<string>();
  const result = await build({
    stdin: {
      contents: `export * from "@dcpjs/http";`,
      resolveDir: process.cwd(),
      loader: "ts",
    },
    bundle: true,
    write: false,
    format: "esm",
    platform: "browser",
    conditions: ["browser", "@dcpjs/source"],
    external: ["@dcpjs/core", "@dcpjs/core/*"],
    metafile: true,
    logLevel: "silent",
    plugins: [
      {
        name: "node-builtins-fail",
        setup(b) {
          b.onResolve({ filter: /.*/ }, (args) => {
            if (builtins.has(args.path)) {
              imported.add(`${args.path} (from ${args.importer})`);
              return { path: args.path, external: true };
            }
            return undefined;
          });
        },
      },
    ],
  });
  expect([...imported]).toEqual([]);
  const inputs = Object.keys(result.metafile.inputs);
  expect(inputs.some((p) => p.endsWith("fetch-transport.ts"))).toBe(true);
  expect(inputs.filter((p) => /node-(transport|body)\.ts$/.test(p))).toEqual([]);
});
