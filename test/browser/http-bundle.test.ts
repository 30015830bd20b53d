// The browser build of @dcpjs/http: bundled for the browser (the `browser` condition picks the
// fetch transport) with core's bundler guard (scripts/browser-bundle.mjs fails on any Node
// built-in), it has the fetch transport and not the node:http one.
import { build } from "esbuild";
import { expect, test } from "vitest";
import { browserConditions, noNodeBuiltins, ROOT } from "../../scripts/browser-bundle.mjs";

test("@dcpjs/http bundles for the browser with the fetch transport and no Node built-in", async () => {
  for (const source of [true, false]) {
    const result = await build({
      absWorkingDir: ROOT,
      stdin: { contents: `export * from "@dcpjs/http";`, resolveDir: ROOT, loader: "js" },
      bundle: true,
      write: false,
      format: "esm",
      platform: "browser",
      conditions: browserConditions(source),
      metafile: true,
      logLevel: "silent",
      plugins: [noNodeBuiltins()],
    });
    const inputs = Object.keys(result.metafile.inputs);
    expect(inputs.some((p) => /fetch-transport\.[jt]s$/.test(p))).toBe(true);
    expect(inputs.filter((p) => /node-(transport|body)\.[jt]s$/.test(p))).toEqual([]);
  }
});
