// TF.js training in a real page (Chromium, tfjs's CPU and WebGL backends) that asyncSaves the
// model and its optimizer to OPFS every 5 steps; a reload mid-training (right after a save
// started) is the kill, and the reloaded page
// resumes from the newest committed checkpoint — its losses and final weights are bit-identical to
// an uninterrupted run's (issue #27).
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DemoPageHarness, demoFinished, demoState, startDemoPage } from "../support/demo-page.js";

const STEPS = 30;
const EVERY = 5;
const KILL_AT = 15;

describe.each([
  { isolated: true, backend: "cpu", label: "cross-origin isolated (SharedArrayBuffer), CPU backend" },
  { isolated: false, backend: "cpu", label: "not isolated (no SharedArrayBuffer), CPU backend" },
  { isolated: true, backend: "webgl", label: "cross-origin isolated, WebGL backend (software GL)" },
])("the demo page, $label", ({ isolated, backend }) => {
  let demo: DemoPageHarness;
  beforeAll(async () => {
    demo = await startDemoPage(isolated);
  });
  afterAll(async () => {
    await demo?.close();
  });

  it("resumes after a reload from the newest committed OPFS checkpoint, with bit-identical losses", async () => {
    const page = await demo.chromium.context.newPage();
    await page.goto(demo.url({ ckpt: "opfs://reference", steps: STEPS, every: EVERY, backend }));
    const reference = await demoFinished(page);
    expect(reference.resumedAt).toBeUndefined();
    expect(Object.keys(reference.losses)).toHaveLength(STEPS);
    expect(reference.backend).toBe(backend);
    expect(await page.evaluate(() => globalThis.crossOriginIsolated)).toBe(isolated);

    // The killed run: it stops right after step 15's asyncSave has staged, with the write going
    // on, and the reload kills it there — racing that save's commit.
    await page.goto(
      demo.url({ ckpt: "opfs://killed", steps: STEPS, every: EVERY, hangAt: KILL_AT, backend }),
    );
    await page.waitForFunction(
      () => (globalThis as unknown as { dcpjsDemo?: { phase: string } }).dcpjsDemo?.phase === "hanging",
      null,
      { timeout: 60_000 },
    );
    const beforeKill = await demoState(page);
    expect(beforeKill.step).toBe(KILL_AT);
    for (const [step, bits] of Object.entries(beforeKill.losses)) expect(bits).toBe(reference.losses[step]);
    await page.reload();
    const resumed = await demoFinished(page);

    // Step 15's save committed before the kill, or it did not and step 10's is the newest.
    expect([KILL_AT - EVERY, KILL_AT]).toContain(resumed.resumedAt);
    const steps = Object.keys(resumed.losses).map(Number);
    expect(Math.min(...steps)).toBe(resumed.resumedAt! + 1);
    expect(steps).toHaveLength(STEPS - resumed.resumedAt!);
    for (const step of steps)
      expect(resumed.losses[step], `loss of step ${step}`).toBe(reference.losses[step]);
    expect(resumed.weights).toEqual(reference.weights);
    expect(resumed.checkpoints[0]).toBe(`opfs://killed/step-${STEPS}`);
    await page.close();
  });
});

describe("the demo page after a resume", () => {
  let demo: DemoPageHarness;
  beforeAll(async () => {
    demo = await startDemoPage();
  });
  afterAll(async () => {
    await demo?.close();
  });

  it("shows 'resumed at step N' after a reload (screenshot)", async () => {
    const page = await demo.chromium.context.newPage();
    await page.goto(demo.url({ ckpt: "opfs://shown", steps: 10, every: EVERY }));
    await demoFinished(page);
    await page.goto(demo.url({ ckpt: "opfs://shown", steps: 20, every: EVERY }));
    const state = await demoFinished(page);
    expect(state.resumedAt).toBe(10);
    const png = await page.screenshot({ path: join(tmpdir(), "dcpjs-demo-resumed.png"), fullPage: true });
    expect(png.subarray(1, 4).toString()).toBe("PNG");
    const status = await page.locator("#status").textContent();
    expect(status).toMatch(/^resumed at step 10 from opfs:\/\/shown\/step-10/);
    expect(await page.locator("progress").evaluate((p) => (p as HTMLProgressElement).value)).toBe(20);
    expect(await page.locator("#checkpoints li").count()).toBe(4);
    await page.close();
  });
});
