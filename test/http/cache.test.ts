import { readdir, rm, utimes } from "node:fs/promises";
import { join } from "node:path";
import { load, save } from "@dcpjs/core";
import { ReadCache } from "@dcpjs/core/extend";
import { copyCheckpoint, verifyCheckpoint } from "@dcpjs/core/ops";
import { cacheIdOf, HttpFileSystem, HttpStorageReader } from "@dcpjs/http";
import { describe, expect, it } from "vitest";
import { spawnTs } from "../support/child.js";
import { damageCache } from "../support/damage.js";
import { type HttpFileServer, serverPerTest } from "../support/http-file-server.js";
import { reports } from "../support/rank-jobs.js";
import { seededState, seededTarget, whichSeed } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

const serve = serverPerTest();

/** A dcpjs checkpoint of `seededState(seed)` at `{root}/ckpt`. */
async function savedCheckpoint(seed = 1, root?: string): Promise<string> {
  const dir = root ?? (await tempDir());
  await save(seededState(seed), { checkpointId: join(dir, "ckpt") });
  return dir;
}

const gets = (server: HttpFileServer) => server.requests.filter((r) => r.method === "GET");

describe("the HTTP read cache (cacheDir)", () => {
  it("a second load is served from the cache: no GET reaches the server, the bytes are exact", async () => {
    const root = await savedCheckpoint(1);
    const server = await serve({ root });
    const cacheDir = await tempDir();
    const url = `${server.origin}/ckpt`;

    const first = new HttpStorageReader({ url, cacheDir });
    const sd1 = seededTarget();
    await load(sd1, { storageReader: first });
    expect(whichSeed(sd1, [1])).toBe(1);
    expect(first.readCache!.stats.fetches).toBeGreaterThan(0);
    expect(gets(server).length).toBeGreaterThan(0);

    server.requests.length = 0;
    const second = new HttpStorageReader({ url, cacheDir });
    const sd2 = seededTarget();
    await load(sd2, { storageReader: second });
    expect(whichSeed(sd2, [1])).toBe(1);
    expect(gets(server)).toEqual([]);
    expect(second.readCache!.stats.fetches).toBe(0);
    expect(second.readCache!.stats.hits).toBeGreaterThan(0);

    // the same through the registry's reader (`dcp verify --cache-dir`)
    server.requests.length = 0;
    const report = await verifyCheckpoint(url, { cacheDir });
    expect(report.damaged).toEqual([]);
    expect(report.checked).toBe(17);
    expect(gets(server)).toEqual([]);
  });

  it("dcp cp --cache-dir: a second copy of an http:// checkpoint reads every byte from the cache", async () => {
    const root = await savedCheckpoint(1);
    const server = await serve({ root });
    const cacheDir = await tempDir();
    const url = `${server.origin}/ckpt`;
    await copyCheckpoint(url, join(await tempDir(), "one"), { cacheDir });
    expect(gets(server).length).toBeGreaterThan(0);
    server.requests.length = 0;
    const dst = join(await tempDir(), "two");
    await copyCheckpoint(url, dst, { cacheDir });
    expect(gets(server)).toEqual([]);
    const sd = seededTarget();
    await load(sd, { checkpointId: dst });
    expect(whichSeed(sd, [1])).toBe(1);
  });

  it("a file replaced at the server (a new ETag) is fetched again, never served stale", async () => {
    const root = await savedCheckpoint(1);
    const server = await serve({ root });
    const cacheDir = await tempDir();
    const url = `${server.origin}/ckpt`;
    await load(seededTarget(), { storageReader: new HttpStorageReader({ url, cacheDir }) });

    // Same sizes, new bytes; an mtime a minute later, so every ETag changes.
    await rm(join(root, "ckpt"), { recursive: true });
    await savedCheckpoint(2, root);
    const later = new Date(Date.now() + 60_000);
    for (const name of await readdir(join(root, "ckpt")))
      await utimes(join(root, "ckpt", name), later, later);

    server.requests.length = 0;
    const reader = new HttpStorageReader({ url, cacheDir });
    const sd = seededTarget();
    await load(sd, { storageReader: reader });
    expect(whichSeed(sd, [1, 2])).toBe(2);
    expect(reader.readCache!.stats.hits).toBe(0);
    expect(gets(server).length).toBeGreaterThan(0);
  });

  it("a file identified by Last-Modified and length (no ETag) is cached and missed when it changes", async () => {
    const root = await savedCheckpoint(1);
    const server = await serve({ root, noEtag: true });
    const cacheDir = await tempDir();
    const url = `${server.origin}/ckpt`;
    await load(seededTarget(), { storageReader: new HttpStorageReader({ url, cacheDir }) });
    server.requests.length = 0;
    const sd = seededTarget();
    await load(sd, { storageReader: new HttpStorageReader({ url, cacheDir }) });
    expect(whichSeed(sd, [1])).toBe(1);
    expect(gets(server)).toEqual([]);

    await rm(join(root, "ckpt"), { recursive: true });
    await savedCheckpoint(3, root);
    const later = new Date(Date.now() + 120_000);
    for (const name of await readdir(join(root, "ckpt")))
      await utimes(join(root, "ckpt", name), later, later);
    const again = seededTarget();
    await load(again, { storageReader: new HttpStorageReader({ url, cacheDir }) });
    expect(whichSeed(again, [1, 3])).toBe(3);
  });

  it("a damaged cached block fails its integrity check, is fetched again, and the load is exact", async () => {
    const root = await savedCheckpoint(2);
    const server = await serve({ root });
    const cacheDir = await tempDir();
    const url = `${server.origin}/ckpt`;
    await load(seededTarget(), { storageReader: new HttpStorageReader({ url, cacheDir }) });
    const flipped = await damageCache(cacheDir);
    expect(flipped).toBeGreaterThan(0);

    server.requests.length = 0;
    const again = new HttpStorageReader({ url, cacheDir });
    const sd = seededTarget();
    await load(sd, { storageReader: again });
    expect(whichSeed(sd, [2])).toBe(2);
    expect(again.readCache!.stats.corrupt).toBe(flipped);
    expect(again.readCache!.stats.fetches).toBe(flipped);
    expect(gets(server).length).toBe(flipped);
  });

  it("bytes damaged in transit are fetched again from the server, not served from the cache, and the cache keeps the good copy", async () => {
    const root = await savedCheckpoint(4);
    const server = await serve({ root });
    const cacheDir = await tempDir();
    const url = `${server.origin}/ckpt`;
    server.fault(".distcp", { kind: "flip" }, 1);
    const first = seededTarget();
    await load(first, { storageReader: new HttpStorageReader({ url, cacheDir }) });
    expect(whichSeed(first, [4])).toBe(4);

    server.requests.length = 0;
    const again = new HttpStorageReader({ url, cacheDir });
    const sd = seededTarget();
    await load(sd, { storageReader: again });
    expect(whichSeed(sd, [4])).toBe(4);
    expect(again.readCache!.stats.fetches).toBe(0);
    expect(gets(server).filter((r) => r.path.endsWith(".distcp"))).toEqual([]);
  });

  it("hf://: a second load sends the CDN no more than a one-byte GET per file (the identity), keyed at the commit", async () => {
    const root = await tempDir();
    const repo = join(root, "hub");
    await save(seededState(1), { checkpointId: join(repo, "org", "model") });
    const commit = "0123456789abcdef0123456789abcdef01234567";
    const cdn = await serve({ root: repo, cdn: true });
    const hub = await serve({ root: repo, hub: { commit, cdnOrigin: cdn.origin } });
    const cacheDir = await tempDir();
    const readCache = new ReadCache({ dir: cacheDir });
    const first = new HttpStorageReader({ url: "hf://org/model", hfEndpoint: hub.origin, readCache });
    await load(seededTarget(), { storageReader: first });
    await readCache.settled();
    const cacache = (await import("cacache")).default;
    const keys = Object.keys(await cacache.ls(cacheDir));
    expect(keys.length).toBeGreaterThan(0);
    for (const key of keys) expect(decodeURIComponent(key)).toContain(`/org/model/resolve/${commit}/`);

    cdn.requests.length = 0;
    const sd = seededTarget();
    const second = new HttpStorageReader({ url: "hf://org/model", hfEndpoint: hub.origin, cacheDir });
    await load(sd, { storageReader: second });
    expect(whichSeed(sd, [1])).toBe(1);
    expect(second.readCache!.stats.fetches).toBe(0);
    for (const r of gets(cdn)) expect(r.headers.range).toBe("bytes=0-0");
  });

  it("keys a file by its URL without the query string (a re-signed URL hits)", () => {
    const { client } = new HttpFileSystem();
    expect(cacheIdOf(client, "https://cdn.example/a/b.safetensors?X-Amz-Signature=1&e=2#x")).toBe(
      "https://cdn.example/a/b.safetensors",
    );
  });

  it("two processes sharing a cacheDir fetch each block once between them", async () => {
    const root = await savedCheckpoint(1);
    const server = await serve({ root });
    const cacheDir = await tempDir();
    const url = `${server.origin}/ckpt`;
    const outcomes = await reports(
      Array.from({ length: 2 }, () => spawnTs("http-cache-load-worker.ts", [url, cacheDir])),
    );
    const got = outcomes.map((o) => {
      if (!o.report) throw new Error(`worker exited without a report: ${o.stderr}`);
      return o.report as unknown as { seed: number | null; cache: { fetches: number; hits: number } };
    });
    expect(got.map((r) => r.seed)).toEqual([1, 1]);
    const fetches = got.reduce((n, r) => n + r.cache.fetches, 0);
    // each block once: as many fetches as the files have blocks (every file here is under 8 MiB)
    const files = (await readdir(join(root, "ckpt"))).length;
    expect(fetches).toBe(files);
    expect(gets(server).length).toBe(files);
  });
});
