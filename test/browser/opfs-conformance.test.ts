// The FileSystemBase conformance suite, run in Chromium against @dcpjs/opfs (bundled with the
// suite and Vitest's expect for the page): every case passes with rename by move() and by copy.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bundleForBrowser, type DemoWebServer, serveDemoWeb } from "@dcpjs/demo-web";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type LaunchedChromium, launchChromium } from "../support/chromium.js";

/** One case's outcome, as the page's runner reports it. */
interface CaseResult {
  readonly name: string;
  readonly status: "passed" | "failed" | "skipped";
  readonly error?: string;
}

const HERE = import.meta.dirname;
/** The packages pnpm hoists for its own resolution (dependencies of dependencies). */
const STORE = join(HERE, "..", "..", "node_modules", ".pnpm", "node_modules");
let dir: string;
let server: DemoWebServer;
let chromium: LaunchedChromium;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "dcpjs-opfs-conformance-"));
  await bundleForBrowser({
    entry: join(HERE, "pages", "opfs-conformance.ts"),
    outfile: join(dir, "conformance.js"),
    alias: {
      vitest: join(HERE, "pages", "vitest-in-page.js"),
      "page-buffer": join(STORE, "buffer", "index.js"),
    },
    // Vitest's expect and chai, and the buffer package, from the store (the page's "vitest" is
    // only its expect; Buffer is for the suite's own helpers).
    nodePaths: [STORE],
  });
  await writeFile(
    join(dir, "index.html"),
    '<!doctype html><link rel="icon" href="data:,"><script type="module" src="./conformance.js"></script>',
  );
  server = await serveDemoWeb(dir);
  chromium = await launchChromium();
});

afterAll(async () => {
  await chromium?.close();
  await server?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

it("OpfsFileSystem passes the FileSystemBase conformance suite in a page, renaming by move() and by copy", async () => {
  const page = await chromium.context.newPage();
  await page.goto(server.url);
  await page.waitForFunction(() => "runConformance" in globalThis);
  const results = await page.evaluate(() =>
    (globalThis as unknown as { runConformance(): Promise<CaseResult[]> }).runConformance(),
  );
  expect(results.filter((r) => r.name.startsWith("OPFS cases")).length).toBe(2 * 4);
  const failed = results.filter((r) => r.status !== "passed");
  expect(failed, JSON.stringify(failed, null, 2)).toEqual([]);
  expect(results.length).toBeGreaterThanOrEqual(2 * 14);
  // Chromium has FileSystemFileHandle.move(): the first half really took that path.
  expect(
    await page.evaluate(async () => {
      const root = await navigator.storage.getDirectory();
      const file = await root.getFileHandle("probe-move", { create: true });
      return typeof (file as unknown as { move?: unknown }).move;
    }),
  ).toBe("function");
});

it("a page killed (reloaded) in the middle of a write leaves the file as it was", async () => {
  type PageGlobals = { OpfsFileSystem: typeof import("@dcpjs/opfs").OpfsFileSystem };
  const page = await chromium.context.newPage();
  await page.goto(server.url);
  await page.waitForFunction(() => "OpfsFileSystem" in globalThis);
  await page.evaluate(async () => {
    const fs = new (globalThis as unknown as PageGlobals).OpfsFileSystem();
    const committed = await fs.createStream("opfs://killed-write/.metadata", "wb");
    await committed.write(new TextEncoder().encode("committed"));
    await committed.close();
    const torn = await fs.createStream("opfs://killed-write/.metadata", "wb");
    await torn.write(new Uint8Array(1 << 20).fill(7)); // never closed: the page goes away
  });
  await page.reload();
  await page.waitForFunction(() => "OpfsFileSystem" in globalThis);
  const after = await page.evaluate(async () => {
    const fs = new (globalThis as unknown as PageGlobals).OpfsFileSystem();
    const r = await fs.createStream("opfs://killed-write/.metadata", "rb");
    return new TextDecoder().decode(await r.read(0, await r.size()));
  });
  expect(after).toBe("committed");
});
