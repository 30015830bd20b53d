import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, expect, test } from "vitest";
import { type LaunchedChromium, launchChromium } from "../support/chromium.js";

let chromium: LaunchedChromium;
const server = createServer((_req, res) => {
  // Cross-origin isolation, as the library's worker and SharedArrayBuffer paths need.
  res.setHeader("Cross-Origin-Opener-Policy", "same-origin");
  res.setHeader("Cross-Origin-Embedder-Policy", "require-corp");
  res.setHeader("Content-Type", "text/html");
  res.end("<!doctype html><title>t</title><p id=x>ok</p>");
});

beforeAll(async () => {
  chromium = await launchChromium();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
});
afterAll(async () => {
  await chromium?.close();
  server.close();
});

test("Debian's Chromium runs headless with OPFS and a cross-origin isolated page", async () => {
  const page = await chromium.context.newPage();
  await page.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
  const facts = await page.evaluate(async () => {
    const root = await navigator.storage.getDirectory();
    const file = await root.getFileHandle("probe", { create: true });
    const writable = await file.createWritable();
    await writable.write("hello");
    await writable.close();
    const text = await (await file.getFile()).text();
    return { text, isolated: globalThis.crossOriginIsolated, sab: typeof SharedArrayBuffer };
  });
  expect(facts).toEqual({ text: "hello", isolated: true, sab: "function" });
});
