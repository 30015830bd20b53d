import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { CheckpointError, load, save } from "@dcpjs/core";
import { S3ReadCache, S3StorageReader, S3StorageWriter } from "@dcpjs/s3";
import { CachedS3Reader } from "@dcpjs/s3/extend";
import cacache from "cacache";
import { describe, expect, it } from "vitest";
import { exited, spawnTs, waitForLine } from "../support/child.js";
import { damageCache } from "../support/damage.js";
import { reports } from "../support/rank-jobs.js";
import { freshUri, recordRequests, s3Env, s3Server, testClient } from "../support/s3.js";
import { seededState, seededTarget, whichSeed } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

interface WorkerReport {
  seed: number | null;
  gets: number;
  bytes: number;
  cache: { hits: number; fetches: number; fetchedBytes: number } | null;
}

/** Runs `n` cache-load-worker processes at once and returns their reports. */
async function loadInProcesses(n: number, uri: string, cacheDir: string): Promise<WorkerReport[]> {
  Object.assign(process.env, s3Env());
  const outcomes = await reports(
    Array.from({ length: n }, () => spawnTs("cache-load-worker.ts", [uri, cacheDir])),
  );
  return outcomes.map((o) => {
    if (!o.report) throw new Error(`worker exited without a report: ${o.stderr}`);
    return o.report as unknown as WorkerReport;
  });
}

/** Bytes of every object under a checkpoint URI (its data files and `.metadata`). */
async function objectBytes(uri: string): Promise<number> {
  const { ListObjectsV2Command } = await import("@aws-sdk/client-s3");
  const [bucket, ...rest] = uri.slice(5).split("/");
  const page = await testClient().send(
    new ListObjectsV2Command({ Bucket: bucket, Prefix: `${rest.join("/")}/` }),
  );
  return (page.Contents ?? []).reduce((n, o) => n + (o.Size ?? 0), 0);
}

async function savedCheckpoint(seed = 1): Promise<string> {
  const uri = freshUri();
  await save(seededState(seed), {
    storageWriter: new S3StorageWriter({ path: uri, client: testClient(), threadCount: 2 }),
  });
  return uri;
}

describe("the S3 read cache", () => {
  it("4 processes loading one checkpoint fetch each byte once; a second round fetches nothing", async () => {
    const uri = await savedCheckpoint();
    const total = await objectBytes(uri);
    const cacheDir = await tempDir();

    const uncached = await loadInProcesses(4, uri, "-");
    expect(uncached.map((r) => r.seed)).toEqual([1, 1, 1, 1]);
    const uncachedBytes = uncached.reduce((n, r) => n + r.bytes, 0);
    expect(uncachedBytes).toBeGreaterThanOrEqual(4 * total);

    const first = await loadInProcesses(4, uri, cacheDir);
    expect(first.map((r) => r.seed)).toEqual([1, 1, 1, 1]);
    // Every object whole, once, across the four processes: each block was fetched by one of them.
    expect(first.reduce((n, r) => n + r.bytes, 0)).toBe(total);
    expect(first.reduce((n, r) => n + r.cache!.fetchedBytes, 0)).toBe(total);

    const second = await loadInProcesses(4, uri, cacheDir);
    expect(second.map((r) => r.seed)).toEqual([1, 1, 1, 1]);
    expect(second.map((r) => r.gets)).toEqual([0, 0, 0, 0]);
  });

  it("a damaged cached block fails its integrity check, is fetched again, and the load is exact", async () => {
    const uri = await savedCheckpoint(2);
    const cacheDir = await tempDir();
    const first = new S3StorageReader({ path: uri, client: testClient(), cacheDir });
    await load(seededTarget(), { storageReader: first });
    // Flip one byte in every content file of the cache.
    const flipped = await damageCache(cacheDir);
    expect(flipped).toBeGreaterThan(0);
    const client = testClient();
    const requests = recordRequests(client);
    const again = new S3StorageReader({ path: uri, client, cacheDir });
    const sd = seededTarget();
    await load(sd, { storageReader: again });
    expect(whichSeed(sd, [2])).toBe(2);
    expect(again.readCache!.stats.corrupt).toBe(flipped);
    expect(again.readCache!.stats.fetches).toBe(flipped);
    expect(requests.filter((r) => r.command === "GetObjectCommand").length).toBe(flipped);
  });

  it("stays within maxBytes, evicting the least recently used blocks first", async () => {
    const uri = await savedCheckpoint(3);
    const cacheDir = await tempDir();
    const cache = new S3ReadCache({ dir: cacheDir, maxBytes: 3 * 64 * 1024, blockBytes: 64 * 1024 });
    const object = { etag: "test-etag", size: 10 * 64 * 1024 };
    const fetch = async (start: number, end: number) => new Uint8Array(end - start).fill(start / 65536);
    for (const b of [0, 1, 2]) await cache.block(object, b, fetch);
    await cache.block(object, 0, fetch); // block 0 is now the most recently used
    await cache.block(object, 3, fetch);
    await cache.settled();
    const keys = Object.keys(await cacache.ls(cacheDir)).map((k) => Number(k.split(":").at(-1)));
    expect(keys.sort()).toEqual([0, 2, 3]); // block 1 was the least recently used
    expect(cache.stats.evicted).toBe(1);
    // Hits refresh a block's time without growing its index: one line per live block.
    for (let i = 0; i < 5; i++) await cache.block(object, 0, fetch);
    const lines = async (dir: string): Promise<number> => {
      let n = 0;
      for (const e of await readdir(dir, { withFileTypes: true })) {
        const p = join(dir, e.name);
        n += e.isDirectory()
          ? await lines(p)
          : (await readFile(p, "utf8")).split("\n").filter(Boolean).length;
      }
      return n;
    };
    const indexDir = join(cacheDir, (await readdir(cacheDir)).find((d) => d.startsWith("index-"))!);
    expect(await lines(indexDir)).toBe(3);
    // Filled block by block by one process, a cache stays within its bound (passes run every eighth of it, or when over).
    const small = new S3ReadCache({ dir: await tempDir(), maxBytes: 16 * 64 * 1024, blockBytes: 64 * 1024 });
    const many = { etag: "many", size: 40 * 64 * 1024 };
    let largest = 0;
    for (let b = 0; b < 40; b++) {
      await small.block(many, b, fetch);
      await small.settled();
      const held = Object.values(await cacache.ls(small.dir)).reduce((n, e) => n + (e.size ?? 0), 0);
      largest = Math.max(largest, held);
    }
    expect(largest).toBe(small.maxBytes);
    // Four fillers of one folder (each with its own running total, as four processes): at most
    // an eighth of the bound more for each of the other three.
    const shared = await tempDir();
    const fillers = [0, 1, 2, 3].map(
      () => new S3ReadCache({ dir: shared, maxBytes: 16 * 64 * 1024, blockBytes: 64 * 1024 }),
    );
    let peak = 0;
    for (let b = 0; b < 80; b++) {
      const filler = fillers[b % 4]!;
      await filler.block({ etag: `filler-${b % 4}`, size: 20 * 64 * 1024 }, Math.floor(b / 4), fetch);
      await filler.settled();
      const held = Object.values(await cacache.ls(shared)).reduce((n, e) => n + (e.size ?? 0), 0);
      peak = Math.max(peak, held);
    }
    expect(peak).toBeGreaterThanOrEqual(16 * 64 * 1024);
    expect(peak).toBeLessThanOrEqual(16 * 64 * 1024 * (1 + 3 / 8));
    // A full load through a small cache still loads exactly, and the cache ends within its bound.
    const reader = new S3StorageReader({
      path: uri,
      client: testClient(),
      cacheDir,
      cacheMaxBytes: 1024 * 1024,
    });
    const sd = seededTarget();
    await load(sd, { storageReader: reader });
    await reader.readCache!.settled();
    expect(whichSeed(sd, [3])).toBe(3);
    const sizes = Object.values(await cacache.ls(cacheDir)).reduce((n, e) => n + (e.size ?? 0), 0);
    expect(sizes).toBeLessThanOrEqual(1024 * 1024);
  });

  it("an object replaced after its HEAD is refused (If-Match), never cached under the old ETag", async () => {
    const client = testClient();
    const { bucket } = s3Server();
    const key = `tests/${Date.now()}-replaced.bin`;
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: new Uint8Array(1000).fill(1) }));
    const cache = new S3ReadCache({ dir: await tempDir() });
    const stream = new CachedS3Reader({ client, bucket, key, uri: `s3://${bucket}/${key}` }, cache);
    expect(await stream.size()).toBe(1000);
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: new Uint8Array(1000).fill(2) }));
    const error = await stream.read(0, 10).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CheckpointError);
    expect((error as CheckpointError).message).toMatch(/replaced/);
    expect(Object.keys(await cacache.ls(cache.dir))).toEqual([]);
  });

  it("a process killed while it fetches a block holds its lock only until the lock goes stale", async () => {
    const dir = await tempDir();
    const holder = spawnTs("cache-lock-holder.ts", [dir]);
    await waitForLine(holder, /fetching/);
    holder.kill("SIGKILL");
    await exited(holder);
    const cache = new S3ReadCache({ dir, lockStaleMs: 2000 });
    let fetches = 0;
    const t0 = performance.now();
    const bytes = await cache.block({ etag: "held", size: 1024 }, 0, async (start, end) => {
      fetches++;
      return new Uint8Array(end - start).fill(7);
    });
    expect([bytes.byteLength, bytes[0], fetches]).toEqual([1024, 7, 1]);
    // It waited for the dead holder's lock to go stale (2 s), and not for the 30 s default.
    expect(performance.now() - t0).toBeGreaterThan(500);
    expect(performance.now() - t0).toBeLessThan(15_000);
  });

  it("refuses a bad configuration with INVALID_ARGUMENT", () => {
    expect(() => new S3ReadCache({ dir: "/tmp/x", lockStaleMs: 100 })).toThrow(/lockStaleMs/);
    expect(() => new S3ReadCache({ dir: "" })).toThrow(/cache dir/);
    expect(() => new S3ReadCache({ dir: "/tmp/x", blockBytes: 1000 })).toThrow(/blockBytes/);
    expect(() => new S3ReadCache({ dir: "/tmp/x", maxBytes: 0 })).toThrow(/maxBytes/);
  });
});

describe("dcp verify and dcp cp with --cache-dir", () => {
  it("verify fills the cache with every object; cp from S3 then copies bit-exactly through it", async () => {
    const { copyCheckpoint, verifyCheckpoint } = await import("@dcpjs/core/ops");
    Object.assign(process.env, s3Env());
    const uri = await savedCheckpoint(4);
    const cacheDir = await tempDir();
    const report = await verifyCheckpoint(uri, { cacheDir });
    expect(report.damaged).toEqual([]);
    const cached = Object.values(await cacache.ls(cacheDir)).reduce((n, e) => n + (e.size ?? 0), 0);
    expect(cached).toBe(await objectBytes(uri));
    const local = join(await tempDir(), "copy");
    await copyCheckpoint(uri, local, { cacheDir });
    const sd = seededTarget();
    await load(sd, { checkpointId: local });
    expect(whichSeed(sd, [4])).toBe(4);
  });
});
