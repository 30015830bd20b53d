import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bundleForBrowser, ROOT } from "../../scripts/browser-bundle.mjs";
import { type LaunchedChromium, launchChromium } from "../support/chromium.js";
import type { CoreSmokeResult } from "./fixtures/core-smoke.js";

// The browser build of @dcpjs/core runs in Chromium: the page's program (fixtures/core-smoke.ts),
// bundled by scripts/browser-bundle.mjs (which fails on any Node.js built-in), saves to an
// in-memory FileSystemBase and loads back — in a cross-origin isolated page (SharedArrayBuffer)
// and in a plain one (none): large checksums and copies run on Web Workers in the first, on the
// page's thread in the second — and in an isolated page whose worker script fails to load.

let chromium: LaunchedChromium;
let outdir: string;
const server = createServer(async (req, res) => {
  const url = new URL(req.url ?? "/", "http://x");
  const [, mode, file] = url.pathname.split("/");
  if (mode?.startsWith("isolated")) {
    res.setHeader("Cross-Origin-Opener-Policy", "same-origin");
    res.setHeader("Cross-Origin-Embedder-Policy", "require-corp");
  }
  if (!file) {
    res.setHeader("Content-Type", "text/html");
    res.end('<!doctype html><title>core</title><script type="module" src="smoke.js"></script>');
    return;
  }
  try {
    // A page whose worker does not load: the pool must give up on workers and do their tasks itself.
    if (mode === "isolated-no-worker" && file.startsWith("browser-offload-worker")) throw new Error("hidden");
    const body = await readFile(join(outdir, file.replace(/[^\w.-]/g, "")));
    res.setHeader("Content-Type", "text/javascript");
    res.end(body);
  } catch {
    res.statusCode = 404;
    res.end();
  }
});

beforeAll(async () => {
  outdir = await mkdtemp(join(tmpdir(), "dcpjs-core-bundle-"));
  await bundleForBrowser({
    entries: { smoke: join(ROOT, "test/browser/fixtures/core-smoke.ts") },
    source: true,
    outdir,
  });
  chromium = await launchChromium();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
});
afterAll(async () => {
  await chromium?.close();
  server.close();
  if (outdir) await rm(outdir, { recursive: true, force: true });
});

describe.each([
  { mode: "isolated", isolated: true },
  { mode: "plain", isolated: false },
  { mode: "isolated-no-worker", isolated: true },
])("the browser bundle of @dcpjs/core in a $mode page", ({ mode, isolated }) => {
  it("saves to memory and loads back bit-exact (resharded rows too); a flipped byte is CHECKSUM_MISMATCH", async () => {
    const page = await chromium.context.newPage();
    const errors: string[] = [];
    page.on("pageerror", (error) => errors.push(String(error)));
    try {
      await page.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/${mode}/`);
      await page.waitForFunction(() => "coreSmoke" in globalThis);
      const result = await page.evaluate(() =>
        (globalThis as unknown as { coreSmoke(): Promise<CoreSmokeResult> }).coreSmoke(),
      );
      expect(errors).toEqual([]);
      expect(result).toMatchObject({
        same: true,
        step: 7,
        note: "hello",
        isolated,
        sharedTensor: isolated,
        damaged: { code: "CHECKSUM_MISMATCH" },
      });
      expect(result.damaged.message).toMatch(/big|small/);
      if (mode === "isolated") expect(result.workers).toBeGreaterThan(0);
      else expect(result.workers).toBe(0);
    } finally {
      await page.close();
    }
  });
});
