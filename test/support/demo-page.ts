import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildDemoWeb, type DemoWebServer, serveDemoWeb } from "@dcpjs/demo-web";
import type { Page } from "playwright-core";
import { type LaunchedChromium, launchChromium } from "./chromium.js";

/** What the demo page exposes as `globalThis.dcpjsDemo` (packages/demo-web/src/page/settings.ts). */
export interface DemoPageState {
  readonly phase: "starting" | "training" | "hanging" | "done" | "failed";
  readonly step: number;
  readonly resumedAt?: number;
  readonly losses: Record<string, string>;
  readonly checkpoints: string[];
  readonly weights?: string[];
  readonly backend?: string;
  readonly loadedFrom?: { readonly url: string; readonly step: number; readonly weights: string[] };
  readonly error?: string;
}

/** The demo page, built into a temporary folder, served on loopback, and a Chromium to open it. */
export interface DemoPageHarness {
  readonly chromium: LaunchedChromium;
  readonly server: DemoWebServer;
  /** The folder served (the built page; a test may put checkpoints beside it). */
  readonly dir: string;
  /**
   * The page's URL with query parameters.
   * @param params - ckpt, steps, every, optimizer, delay, backend, init, hangAt.
   */
  url(params: Record<string, string | number>): string;
  close(): Promise<void>;
}

/**
 * Builds the demo page (esbuild; fails on a Node built-in), serves it and starts Chromium.
 * @param isolated - serve it cross-origin isolated (COOP/COEP). @default true
 */
export async function startDemoPage(isolated = true): Promise<DemoPageHarness> {
  const dir = await mkdtemp(join(tmpdir(), "dcpjs-demo-web-"));
  await buildDemoWeb(dir);
  const server = await serveDemoWeb(dir, { isolated });
  const chromium = await launchChromium();
  return {
    chromium,
    server,
    dir,
    url: (params) =>
      `${server.url}?${new URLSearchParams(Object.entries(params).map(([k, v]) => [k, String(v)]))}`,
    async close() {
      await chromium.close();
      await server.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The page's `dcpjsDemo` state. */
export function demoState(page: Page): Promise<DemoPageState> {
  return page.evaluate(() => (globalThis as unknown as { dcpjsDemo: DemoPageState }).dcpjsDemo);
}

/**
 * Waits until the demo page has finished (or failed) and returns its state.
 * @throws {@link Error} with the page's error when it failed.
 */
export async function demoFinished(page: Page, timeout = 120_000): Promise<DemoPageState> {
  await page.waitForFunction(
    () => {
      const phase = (globalThis as unknown as { dcpjsDemo?: DemoPageState }).dcpjsDemo?.phase;
      return phase === "done" || phase === "failed";
    },
    null,
    { timeout },
  );
  const state = await demoState(page);
  if (state.phase === "failed") throw new Error(`The demo page failed: ${state.error}`);
  return state;
}
