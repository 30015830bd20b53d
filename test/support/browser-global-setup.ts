import { ensureChromium } from "./chromium.js";

/** Vitest global setup of the browser project: Debian's Chromium, installed with apt when missing. */
export default async function setup(): Promise<void> {
  await ensureChromium((line) => console.log(line));
}
