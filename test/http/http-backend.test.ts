import { mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  createLocalProcessGroups,
  emptyTensor,
  exportSafetensors,
  load,
  loadStateDictFromKeys,
  type StateDict,
  save,
  shardTensor,
  type Tensor,
} from "@dcpjs/core";
import { storageBackendFor } from "@dcpjs/core/testing";
import { HttpFileSystem, HttpStorageReader, resolveHfUrl } from "@dcpjs/http";
import { describe, expect, it } from "vitest";
import { failureOf } from "../support/failure.js";
import { serverPerTest } from "../support/http-file-server.js";
import { hexOf, randomTensor } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

const serve = serverPerTest();

/** A state dict of two 1.5 MiB tensors (read with a request each), a small one and a value. */
function state(): StateDict {
  return {
    "big.a": randomTensor("float32", [768, 512], 1),
    "big.b": randomTensor("float32", [768, 512], 2),
    small: randomTensor("int64", [10], 3),
    step: 7,
  };
}

function target(): StateDict {
  return {
    "big.a": emptyTensor("float32", [768, 512]),
    "big.b": emptyTensor("float32", [768, 512]),
    small: emptyTensor("int64", [10]),
    step: 0,
  };
}

function expectSame(got: StateDict, want: StateDict): void {
  for (const [k, v] of Object.entries(want)) {
    if (typeof v === "number") expect(got[k]).toBe(v);
    else expect(hexOf(got[k] as Tensor), k).toBe(hexOf(v as Tensor));
  }
}

/** A dcpjs checkpoint at `{root}/ckpt`. */
async function savedCheckpoint(): Promise<{ root: string; sd: StateDict }> {
  const root = await tempDir();
  const sd = state();
  await save(sd, { checkpointId: join(root, "ckpt") });
  return { root, sd };
}

describe("@dcpjs/http", () => {
  it("loads a dcpjs checkpoint over http:// byte-exact, whole and resharded, through the registry", async () => {
    const { root, sd } = await savedCheckpoint();
    const server = await serve({ root });
    const checkpointId = `${server.origin}/ckpt`;
    expect(storageBackendFor(checkpointId).name).toBe("http");
    const got = await load(target(), { checkpointId });
    expectSame(got, sd);
    const full = sd["big.a"] as Tensor;
    await Promise.all(
      createLocalProcessGroups(3).map(async (pg) => {
        const mine = shardTensor(emptyTensor("float32", [768, 512]), { dim: 1, rank: pg.rank, worldSize: 3 });
        await load({ "big.a": mine }, { checkpointId, processGroup: pg });
        const want = shardTensor(full, { dim: 1, rank: pg.rank, worldSize: 3 });
        expect(hexOf(mine.shards[0]!.tensor)).toBe(hexOf(want.shards[0]!.tensor));
      }),
    );
    // every data request is ranged, and (one at a time) each after the first conditional on the version first seen
    server.requests.length = 0;
    const one = new HttpStorageReader({ url: checkpointId, maxConnections: 1 });
    expectSame(await load(target(), { storageReader: one }), sd);
    const data = server.requests.filter((r) => r.path.endsWith(".distcp"));
    expect(data.length).toBeGreaterThan(1);
    for (const r of data) expect(r.headers.range).toMatch(/^bytes=\d+-\d+$/);
    for (const r of data.slice(1)) expect(r.headers["if-match"]).toMatch(/^"/);
  });

  it("keeps at most maxConnections requests in flight per origin, for all the ranks of a process together", async () => {
    const { root, sd } = await savedCheckpoint();
    const server = await serve({ root });
    const full = sd["big.a"] as Tensor;
    await Promise.all(
      createLocalProcessGroups(3).map(async (pg) => {
        const mine = shardTensor(emptyTensor("float32", [768, 512]), { rank: pg.rank, worldSize: 3 });
        const storageReader = new HttpStorageReader({ url: `${server.origin}/ckpt`, maxConnections: 2 });
        await load({ "big.a": mine }, { storageReader, processGroup: pg });
        expect(hexOf(mine.shards[0]!.tensor)).toBe(
          hexOf(shardTensor(full, { rank: pg.rank, worldSize: 3 }).shards[0]!.tensor),
        );
      }),
    );
    expect(server.peakInFlight()).toBeLessThanOrEqual(2);
  });

  it("loads a sharded safetensors folder through its index, and a single model.safetensors", async () => {
    const { root, sd } = await savedCheckpoint();
    await exportSafetensors(join(root, "ckpt"), join(root, "sharded"), { maxShardSize: 2 * 1024 * 1024 });
    expect(
      (await readdir(join(root, "sharded"))).filter((f) => f.endsWith(".safetensors")).length,
    ).toBeGreaterThan(1);
    await exportSafetensors(join(root, "ckpt"), join(root, "single"));
    // a single-file repository: model.safetensors and no index
    await rename(
      join(root, "single", "model-00001-of-00001.safetensors"),
      join(root, "single", "model.safetensors"),
    );
    await rm(join(root, "single", "model.safetensors.index.json"));
    const server = await serve({ root });
    const tensors = { "big.a": sd["big.a"], "big.b": sd["big.b"], small: sd.small };
    for (const folder of ["sharded", "single"]) {
      const got = await loadStateDictFromKeys({
        checkpointId: `${server.origin}/${folder}`,
        keys: Object.keys(tensors),
      });
      expectSame(got as StateDict, tensors);
    }
    const fs = new HttpFileSystem();
    const listed = await fs.list(`${server.origin}/sharded`);
    expect(listed.map((e) => e.name)).toContain("model.safetensors.index.json");
    expect(listed.every((e) => e.size > 0)).toBe(true);
  });

  it("reads hf://org/model through the Hub's resolve → CDN redirect, pinned to X-Repo-Commit, the token kept from the CDN", async () => {
    const { root, sd } = await savedCheckpoint();
    const repo = join(root, "hub");
    await exportSafetensors(join(root, "ckpt"), join(repo, "org", "model"), {
      maxShardSize: 2 * 1024 * 1024,
    });
    const commit = "0123456789abcdef0123456789abcdef01234567";
    const cdn = await serve({ root: repo, cdn: true });
    const hub = await serve({ root: repo, hub: { commit, cdnOrigin: cdn.origin } });
    const reader = new HttpStorageReader({ url: "hf://org/model", hfEndpoint: hub.origin, token: "secret" });
    const got = await loadStateDictFromKeys({ storageReader: reader, keys: ["big.a", "small"] });
    expectSame(got as StateDict, { "big.a": sd["big.a"]!, small: sd.small! });
    expect(hub.requests.length).toBeGreaterThan(1);
    for (const r of hub.requests) expect(r.headers.authorization).toBe("Bearer secret");
    // preconditions go to the origin whose ETag was pinned (the CDN), not to the Hub's resolve
    for (const r of hub.requests) expect(r.headers["if-match"]).toBeUndefined();
    expect(cdn.requests.length).toBeGreaterThan(0);
    for (const r of cdn.requests) expect(r.headers.authorization).toBeUndefined();
    // a file's CDN URL, once it answered, is used directly: the Hub sees a request or so per file
    expect(hub.requests.length).toBeLessThan(cdn.requests.length);
    // the first request resolves main; every later one the commit it named
    expect(hub.requests[0]!.path).toContain("/resolve/main/");
    for (const r of hub.requests.slice(1)) expect(r.path).toContain(`/resolve/${commit}/`);
    // a listing is the Hub's tree API (every page; LFS files with their real size)
    const fs = new HttpFileSystem({ hfEndpoint: hub.origin });
    const listed = await fs.list("hf://org/model");
    const local = (await readdir(join(repo, "org", "model"))).sort();
    expect(listed.map((e) => e.name).sort()).toEqual(local);
    const shard = listed.find((e) => e.name.endsWith(".safetensors"))!;
    const { size } = await stat(join(repo, "org", "model", shard.name));
    expect(shard.size).toBe(size);
    // the same through the registry, with HF_ENDPOINT and HF_TOKEN
    const before = { endpoint: process.env.HF_ENDPOINT, token: process.env.HF_TOKEN };
    process.env.HF_ENDPOINT = hub.origin;
    process.env.HF_TOKEN = "from-env";
    hub.requests.length = 0;
    cdn.requests.length = 0;
    try {
      const again = await loadStateDictFromKeys({ checkpointId: "hf://org/model@main", keys: ["small"] });
      expect(hexOf(again.small as Tensor)).toBe(hexOf(sd.small as Tensor));
      expect(hub.requests.length).toBeGreaterThan(0);
      for (const r of hub.requests) expect(r.headers.authorization).toBe("Bearer from-env");
      for (const r of cdn.requests) expect(r.headers.authorization).toBeUndefined();
    } finally {
      for (const [name, value] of [
        ["HF_ENDPOINT", before.endpoint],
        ["HF_TOKEN", before.token],
      ] as const) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  });

  it("an expired CDN URL (403 where a file's CDN URL was used directly) is resolved through the Hub again", async () => {
    const { root, sd } = await savedCheckpoint();
    const repo = join(root, "hub");
    await exportSafetensors(join(root, "ckpt"), join(repo, "org", "model"));
    const cdn = await serve({ root: repo, cdn: true });
    const hub = await serve({ root: repo, hub: { commit: "c".repeat(40), cdnOrigin: cdn.origin } });
    // the shard's first answer comes the long way; its second request, direct, finds the URL expired
    cdn.fault("-of-00001.safetensors", { kind: "status", status: 403 }, 1, 1);
    const reader = new HttpStorageReader({
      url: "hf://org/model",
      hfEndpoint: hub.origin,
      maxConnections: 1,
    });
    const got = await loadStateDictFromKeys({ storageReader: reader, keys: ["big.b"] });
    expect(hexOf(got["big.b"] as Tensor)).toBe(hexOf(sd["big.b"] as Tensor));
    expect(cdn.requests.some((r) => r.status === 403)).toBe(true);
    const shardResolves = hub.requests.filter((r) => r.path.endsWith("-of-00001.safetensors"));
    expect(shardResolves.length).toBe(2);
  });

  it("a same-origin CDN path (relative 302) is used directly too, and resolved again when it answers 403", async () => {
    const { root, sd } = await savedCheckpoint();
    const repo = join(root, "hub");
    await exportSafetensors(join(root, "ckpt"), join(repo, "org", "model"));
    const hub = await serve({ root: repo, hub: { commit: "c".repeat(40) } });
    // the shard's first answer comes the long way; its second request, direct, finds the path expired
    hub.fault("-of-00001.safetensors", { kind: "status", status: 403 }, 1, 1);
    const reader = new HttpStorageReader({
      url: "hf://org/model",
      hfEndpoint: hub.origin,
      maxConnections: 1,
    });
    const got = await loadStateDictFromKeys({ storageReader: reader, keys: ["big.b"] });
    expect(hexOf(got["big.b"] as Tensor)).toBe(hexOf(sd["big.b"] as Tensor));
    expect(hub.requests.some((r) => r.status === 403)).toBe(true);
    const shard = hub.requests.filter((r) => r.path.endsWith("-of-00001.safetensors"));
    const resolves = shard.filter((r) => r.path.includes("/resolve/"));
    expect(resolves.length).toBe(2);
    // every other read of the shard went to /cdn/ without a resolve first
    expect(shard.length - resolves.length).toBeGreaterThan(resolves.length);
  });

  it("a data file replaced mid-load is SOURCE_CHANGED naming it, never mixed bytes", async () => {
    const { root } = await savedCheckpoint();
    const server = await serve({ root });
    const dataFile = (await readdir(join(root, "ckpt"))).find((f) => f.endsWith(".distcp"))!;
    let served = 0;
    server.beforeServe = async (path) => {
      if (!path.endsWith(dataFile) || ++served !== 2) return;
      // the same length, new bytes and a new modification time: a new ETag
      const file = join(root, "ckpt", dataFile);
      const bytes = await readFile(file);
      bytes.reverse();
      await writeFile(file, bytes);
      await utimes(file, new Date(), new Date(Date.now() + 5000));
    };
    const reader = new HttpStorageReader({ url: `${server.origin}/ckpt`, maxConnections: 1 });
    const error = await failureOf(load(target(), { storageReader: reader }));
    expect(error.code).toBe("SOURCE_CHANGED");
    expect(error.message).toContain(dataFile);
  });

  it("a server that ignores Range: the right bytes, sliced from whole-file answers, and one warning", async () => {
    const { root, sd } = await savedCheckpoint();
    const server = await serve({ root, ignoreRange: true });
    const warnings: string[] = [];
    const reader = new HttpStorageReader({
      url: `${server.origin}/ckpt`,
      onWarning: (m) => warnings.push(m),
    });
    expectSame(await load(target(), { storageReader: reader }), sd);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain("ignores Range");
    expect(server.requests.some((r) => r.headers.range !== undefined && r.status === 200)).toBe(true);
  });

  it("retries a 503 after its Retry-After, and resumes a broken body from the last byte received", async () => {
    const { root, sd } = await savedCheckpoint();
    const server = await serve({ root });
    server.fault(".distcp", { kind: "status", status: 503, retryAfter: "1" });
    server.fault(".distcp", { kind: "truncate", afterBytes: 100_000 });
    const started = Date.now();
    const reader = new HttpStorageReader({ url: `${server.origin}/ckpt`, maxConnections: 1 });
    expectSame(await load(target(), { storageReader: reader }), sd);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    const data = server.requests.filter((r) => r.path.endsWith(".distcp"));
    expect(data[0]!.status).toBe(503);
    // the truncated answer (the first longer than 100 000 bytes) is asked again from where its body broke
    const ranges = data.map((r) => r.headers.range!.slice(6).split("-").map(Number) as [number, number]);
    const cut = ranges.findIndex(([s, e], i) => i > 0 && e - s + 1 > 100_000);
    const [start, end] = ranges[cut]!;
    const resumed = ranges.slice(cut + 1).find(([s, e]) => s > start && s <= start + 100_000 && e === end);
    expect(resumed, JSON.stringify(data.map((r) => [r.headers.range, r.status]))).toBeDefined();
  });

  it("bytes damaged in transit (.metadata, data) are requested again", async () => {
    const { root, sd } = await savedCheckpoint();
    const server = await serve({ root });
    server.fault(".metadata", { kind: "flip" });
    server.fault(".distcp", { kind: "flip" }, 2);
    expectSame(await load(target(), { checkpointId: `${server.origin}/ckpt` }), sd);
    expect(server.requests.filter((r) => r.path.endsWith(".metadata")).length).toBe(2);
  });

  it("a server that answers less of a range than asked (a capped 206) is asked for the rest", async () => {
    const { root, sd } = await savedCheckpoint();
    const server = await serve({ root, maxRangeBytes: 256 * 1024 });
    const reader = new HttpStorageReader({ url: `${server.origin}/ckpt`, maxAttempts: 1 });
    expectSame(await load(target(), { storageReader: reader }), sd);
    expect(server.requests.filter((r) => r.path.endsWith(".distcp")).length).toBeGreaterThan(12);
  });

  it("a stalled body fails after timeoutMs and is retried", async () => {
    const { root, sd } = await savedCheckpoint();
    const server = await serve({ root });
    server.fault(".distcp", { kind: "stall" });
    const reader = new HttpStorageReader({ url: `${server.origin}/ckpt`, timeoutMs: 300 });
    expectSame(await load(target(), { storageReader: reader }), sd);
  });

  it("an abort ends the load promptly with ABORTED and leaves no request pending", async () => {
    const { root } = await savedCheckpoint();
    const server = await serve({ root });
    server.fault(".distcp", { kind: "stall" }, 100);
    const controller = new AbortController();
    const loading = load(target(), { checkpointId: `${server.origin}/ckpt`, signal: controller.signal });
    while (!server.requests.some((r) => r.path.endsWith(".distcp")))
      await new Promise((r) => setTimeout(r, 10));
    const abortedAt = Date.now();
    controller.abort();
    const error = await failureOf(loading);
    expect(error.code).toBe("ABORTED");
    expect(Date.now() - abortedAt).toBeLessThan(1000);
    const deadline = Date.now() + 2000;
    while (server.inFlight() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(server.inFlight()).toBe(0);
  });

  it("maps 404 of a data file to NOT_FOUND naming the URL, and a folder with nothing to INCOMPLETE_CHECKPOINT", async () => {
    const { root } = await savedCheckpoint();
    const server = await serve({ root });
    const dataFile = (await readdir(join(root, "ckpt"))).find((f) => f.endsWith(".distcp"))!;
    server.fault(dataFile, { kind: "status", status: 404 }, 100);
    const missing = await failureOf(load(target(), { checkpointId: `${server.origin}/ckpt` }));
    expect(missing.code).toBe("NOT_FOUND");
    expect(missing.message).toContain(`${server.origin}/ckpt/${dataFile}`);
    await mkdir(join(root, "empty"));
    const none = await failureOf(load(target(), { checkpointId: `${server.origin}/empty` }));
    expect(none.code).toBe("INCOMPLETE_CHECKPOINT");
  });

  it("is read-only, and identifies files without ETag by Last-Modified and length", async () => {
    const { root, sd } = await savedCheckpoint();
    const server = await serve({ root, noEtag: true });
    const backend = storageBackendFor(`${server.origin}/ckpt`);
    expect(backend.readOnly).toBe(true);
    expect(backend.createWriter).toBeUndefined();
    expect((await failureOf(save(sd, { checkpointId: `${server.origin}/x` }))).code).toBe("INVALID_ARGUMENT");
    const fs = new HttpFileSystem();
    expect((await failureOf(fs.createStream(`${server.origin}/x`, "wb"))).code).toBe("INVALID_ARGUMENT");
    expect(await fs.exists(`${server.origin}/ckpt/.metadata`)).toBe(true);
    expect(await fs.exists(`${server.origin}/ckpt/nope`)).toBe(false);
    // a server that refuses HEAD is asked for the first byte
    server.fault(".metadata", { kind: "status", status: 405 });
    expect(await new HttpFileSystem().exists(`${server.origin}/ckpt/.metadata`)).toBe(true);
    const reader = new HttpStorageReader({ url: `${server.origin}/ckpt`, maxConnections: 1 });
    expectSame(await load(target(), { storageReader: reader }), sd);
    const data = server.requests.filter((r) => r.path.endsWith(".distcp"));
    expect(data.some((r) => r.headers["if-unmodified-since"] !== undefined)).toBe(true);
  });

  it("resolves hf:// ids to the Hub's resolve URLs", () => {
    expect(resolveHfUrl("hf://org/model", "https://h.example")).toBe(
      "https://h.example/org/model/resolve/main",
    );
    expect(resolveHfUrl("hf://org/model@v1.0/sub/dir", "https://h.example/")).toBe(
      "https://h.example/org/model/resolve/v1.0/sub/dir",
    );
    expect(resolveHfUrl("hf://datasets/org/set@refs%2Fpr%2F1", "https://h.example")).toBe(
      "https://h.example/datasets/org/set/resolve/refs%2Fpr%2F1",
    );
    expect(() => resolveHfUrl("hf://org")).toThrow(/Expected hf:\/\/ORG\/REPO/);
  });
});
