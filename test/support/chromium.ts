import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Browser, type BrowserContext, chromium } from "playwright-core";
import { ensureDebianPackage } from "./debian-package.js";

/** Where Debian's Chromium lives. */
export const CHROMIUM_PATH = "/usr/bin/chromium";

/**
 * Makes sure Debian's Chromium is installed (apt-get on first use, as RGW and nginx), for the
 * browser tests' global setup — with its recommended packages (fonts-liberation for the demo page's
 * text, Mesa's drivers), as the install the browser tests were first run against.
 *
 * @param log - where to say it installs.
 */
export function ensureChromium(log: (line: string) => void): Promise<void> {
  return ensureDebianPackage(log, [CHROMIUM_PATH, "--version"], "chromium");
}

/** A headless Chromium with a fresh profile, and its cleanup. */
export interface LaunchedChromium {
  readonly browser: Browser;
  /** A persistent context over the fresh profile (OPFS and storage survive page reloads in it). */
  readonly context: BrowserContext;
  /** Closes the browser and deletes the profile. */
  close(): Promise<void>;
}

/**
 * Starts Debian's Chromium headless through playwright-core, with a new empty profile and the
 * flags this machine needs (no background networking: its closed network refuses those
 * connections; no sandbox: the tests run as root).
 *
 * @param args - extra Chromium switches.
 */
export async function launchChromium(args: readonly string[] = []): Promise<LaunchedChromium> {
  const profile = await mkdtemp(join(tmpdir(), "dcpjs-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      ...args,
    ],
  });
  const browser = context.browser();
  return {
    // launchPersistentContext has no separate Browser object; the context is what tests use.
    browser: browser as Browser,
    context,
    async close() {
      await context.close().catch(() => {});
      await rm(profile, { recursive: true, force: true });
    },
  };
}
