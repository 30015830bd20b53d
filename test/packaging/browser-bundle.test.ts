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

describe("the browser platform (packages/core/src/platform/browser.ts)", () => {
  it("exports every name the Node.js platform does, and no other", async () => {
    const node = await import("../../packages/core/src/platform/node.js");
    const browser = await import("../../packages/core/src/platform/browser.js");
    expect(Object.keys(browser).sort()).toEqual(Object.keys(node).sort());
    for (const name of Object.keys(node) as (keyof typeof node)[])
      expect(typeof browser[name], name).toBe(typeof node[name]);
  });

  it("computes CRC-32 and CRC-32C as @node-rs/crc32 does, from scratch and continued from a previous value", async () => {
    const native = await import("@node-rs/crc32");
    const js = await import("../../packages/core/src/platform/crc-browser.js");
    const bytes = new Uint8Array(new SharedArrayBuffer(3 * 1024 * 1024 + 17));
    for (let i = 0, x = 7; i < bytes.length; i++) {
      x = (x * 1103515245 + 12345) >>> 0;
      bytes[i] = x >>> 24;
    }
    for (const name of ["crc32", "crc32c"] as const)
      for (const [at, end] of [
        [0, 0],
        [0, 1],
        [5, 1029],
        [0, bytes.length],
      ] as const) {
        const part = bytes.subarray(at, end);
        expect(js[name](part), `${name} ${at}..${end}`).toBe(native[name](part));
        const split = at + ((end - at) >> 1);
        const first = js[name](bytes.subarray(at, split));
        expect(js[name](bytes.subarray(split, end), first), `${name} ${at}..${split}..${end}`).toBe(
          native[name](part),
        );
      }
  });
});
