// @dcpjs/http in a real browser: a dcpjs checkpoint of 1 GiB+ loaded over loopback HTTP into
// preallocated tensors in a page, byte-exact, with the page's memory (JS heap + ArrayBuffer
// backing stores, CDP's Runtime.getHeapUsage) bounded by the largest tensor + 64 MiB above the
// targets; a byte flipped by the server fails CHECKSUM_MISMATCH naming the tensor; an aborted load
// leaves no request open on the server.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, type HttpPage, heapSampler, openHttpPage, writeIntCheckpoint } from "./http-page.js";

const MiB = 1024 * 1024;
/** 9 tensors of 128 MiB: 1.125 GiB in one file. */
const BIG = { count: 9, shape: [32, MiB] as const };
/** 4 tensors of 4 MiB. */
const SMALL = { count: 4, shape: [1024, 1024] as const };

let http: HttpPage;
let big: [string, readonly number[]][];
let small: [string, readonly number[]][];
/** The served folder, for the whole file (support/tmp's folders go after each test). */
let root: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dcpjs-http-page-"));
  big = await writeIntCheckpoint(join(root, "big"), BIG.count, BIG.shape);
  small = await writeIntCheckpoint(join(root, "flip"), SMALL.count, SMALL.shape);
  await writeIntCheckpoint(join(root, "abort"), SMALL.count, SMALL.shape);
  http = await openHttpPage(root);
}, 120_000);
afterAll(async () => {
  await http?.close();
  await rm(root, { recursive: true, force: true });
});

describe("@dcpjs/http in Chromium (the fetch transport)", () => {
  it("loads 1 GiB+ byte-exact with the page's memory ≤ the targets + the largest tensor + 64 MiB", async () => {
    const { page, server } = http;
    const heap = await heapSampler(page);
    const before = await heap.settled();
    await call(page, "allocate", big);
    const withTargets = await heap.settled();
    const targets = BIG.count * BIG.shape[0] * BIG.shape[1] * 4;
    expect(withTargets - before).toBeGreaterThanOrEqual(targets);
    heap.start();
    await call(page, "start", `${server.origin}/big`);
    const result = await call(page, "finish");
    const peak = await heap.stop();
    expect(result.error).toBeUndefined();
    const largest = BIG.shape[0] * BIG.shape[1] * 4;
    const above = peak - withTargets;
    console.log(
      `1 GiB+ page load: ${(result.ms / 1000).toFixed(2)} s, ${((targets / MiB / result.ms) * 1000).toFixed(0)} MiB/s; memory above the targets at peak ${(above / MiB).toFixed(1)} MiB (bound ${(largest + 64 * MiB) / MiB} MiB)`,
    );
    expect(above).toBeLessThanOrEqual(largest + 64 * MiB);
    // every data request was ranged
    const data = server.requests.filter((r) => r.path.includes("/big/") && r.path.endsWith(".distcp"));
    expect(data.length).toBeGreaterThan(0);
    expect(data.every((r) => r.headers.range !== undefined && r.status === 206)).toBe(true);
    expect(await call(page, "check")).toBe(0);
    await call(page, "drop");
  }, 120_000);

  it("a byte flipped by the server on every answer: CHECKSUM_MISMATCH naming the tensor", async () => {
    const { page, server } = http;
    await call(page, "allocate", small);
    server.fault("/flip/__", { kind: "flip" }, 1000);
    await call(page, "start", `${server.origin}/flip`, { maxAttempts: 2 });
    const result = await call(page, "finish");
    expect(result.error?.code, result.error?.message).toBe("CHECKSUM_MISMATCH");
    expect(result.error?.message).toMatch(/\bt[0-3]\b/);
  });

  it("an aborted load rejects ABORTED and leaves no request open on the server", async () => {
    const { page, server } = http;
    await call(page, "allocate", small);
    // every data answer stalls after its headers: the requests stay open until the page closes them
    server.fault("/abort/__", { kind: "stall" }, 1000);
    await call(page, "start", `${server.origin}/abort`);
    const deadline = Date.now() + 10_000;
    while (server.inFlight() === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(server.inFlight()).toBeGreaterThan(0);
    await call(page, "abort");
    const result = await call(page, "finish");
    expect(result.error?.code).toBe("ABORTED");
    const closedBy = Date.now() + 2_000;
    while (server.inFlight() > 0 && Date.now() < closedBy) await new Promise((r) => setTimeout(r, 20));
    expect(server.inFlight()).toBe(0);
  });
});
