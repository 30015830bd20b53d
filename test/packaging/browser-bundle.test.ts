import { describe, expect, it } from "vitest";
import { BROWSER_ENTRIES, bundleForBrowser } from "../../scripts/browser-bundle.mjs";

// The browser build (issue #27): esbuild for `platform: "browser"` with the `browser` condition,
// failing on any Node.js built-in (scripts/browser-bundle.mjs). From the TypeScript sources, and
// from `dist` (what an installed package offers), so that every condition combination of
// @dcpjs/core's `#platform` imports resolves.
describe.each([
  { from: "the sources", source: true },
  { from: "dist", source: false },
])("the browser bundle of @dcpjs/core, from $from", ({ source }) => {
  it("contains no Node.js built-in, nor the Node.js platform", async () => {
    const result = await bundleForBrowser({ source });
    const inputs = Object.keys(result.metafile.inputs);
    expect(inputs.some((f) => /packages\/core\/(src|dist)\/platform\/browser\.(ts|js)$/.test(f))).toBe(true);
    const nodeOnly = inputs.filter((f) =>
      /\/platform\/node\.|\/storage\/(local-file-system|read-cache|worker-pool|offload-worker)\.|node_modules\/.*\/(@node-rs|piscina|cacache|proper-lockfile)\//.test(
        f,
      ),
    );
    expect(nodeOnly).toEqual([]);
    expect(Object.keys(result.metafile.outputs).length).toBeGreaterThanOrEqual(
      Object.keys(BROWSER_ENTRIES).length,
    );
  });
});

it("the check fails on a Node.js built-in, naming it and its importer", async () => {
  await expect(
    bundleForBrowser({
      entries: { bad: "./test/packaging/fixtures/imports-node-builtin.mjs" },
      source: true,
    }),
  ).rejects.toMatchObject({
    errors: expect.arrayContaining([
      expect.objectContaining({
        text: 'Expected no Node.js built-in in the browser bundle, got "node:fs" imported by test/packaging/fixtures/imports-node-builtin.mjs',
      }),
      expect.objectContaining({
        text: 'Expected no Node.js built-in in the browser bundle, got "path" imported by test/packaging/fixtures/imports-node-builtin.mjs',
      }),
    ]),
  });
});
