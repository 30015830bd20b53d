// The loopback nginx the HTTP tests run against behaves as the HTTP backend assumes servers and
// the Hub do (ranges, a strong ETag, If-Match, If-Range, the resolve → CDN redirect), and the fault
// proxy's HTTP faults do what they say.
import { readFile, stat, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type FaultProxy, startFaultProxy } from "../support/fault-proxy.js";
import { HTTP_FIXTURES } from "../support/http-fixtures.js";
import { HUB_COMMIT, readAccessLog } from "../support/nginx-server.js";

const nginx = inject("nginx");
const file = `${HTTP_FIXTURES.hubRepo}/model-00001-of-00003.safetensors`;
const noRedirect = { redirect: "manual" } as const;

describe("nginx as configured by test/support/nginx-server.ts", () => {
  it('answers a range with 206 and Content-Range, and sends a strong "mtime-size" ETag', async () => {
    const { size, mtimeMs } = await stat(join(nginx.root, file));
    const res = await fetch(`${nginx.url}/${file}`, { headers: { range: "bytes=8-15" } });
    expect(res.status).toBe(206);
    expect(res.headers.get("content-range")).toBe(`bytes 8-15/${size}`);
    const etag = `"${Math.floor(mtimeMs / 1000).toString(16)}-${size.toString(16)}"`;
    expect(res.headers.get("etag")).toBe(etag);
    expect(res.headers.get("last-modified")).not.toBeNull();
    const bytes = new Uint8Array(await res.arrayBuffer());
    expect(bytes).toEqual(new Uint8Array(await readFile(join(nginx.root, file))).subarray(8, 16));
  });

  it("answers If-Match with 412 when the ETag differs, and If-Range with the whole file", async () => {
    const head = await fetch(`${nginx.url}/${file}`, { method: "HEAD" });
    const etag = head.headers.get("etag")!;
    const ok = await fetch(`${nginx.url}/${file}`, { headers: { range: "bytes=0-3", "if-match": etag } });
    expect(ok.status).toBe(206);
    await ok.body?.cancel();
    const stale = await fetch(`${nginx.url}/${file}`, {
      headers: { range: "bytes=0-3", "if-match": '"0-1"' },
    });
    expect(stale.status).toBe(412);
    await stale.body?.cancel();
    const same = await fetch(`${nginx.url}/${file}`, { headers: { range: "bytes=0-3", "if-range": etag } });
    expect(same.status).toBe(206);
    await same.body?.cancel();
    const other = await fetch(`${nginx.url}/${file}`, {
      headers: { range: "bytes=0-3", "if-range": '"0-1"' },
    });
    expect(other.status).toBe(200);
    expect(other.headers.get("content-length")).toBe(head.headers.get("content-length"));
    await other.body?.cancel();
  });

  it("changes the ETag when a file is rewritten with a new mtime (same size)", async () => {
    const path = join(nginx.root, "etag-change.bin");
    await writeFile(path, Buffer.alloc(64, 1));
    await utimes(path, 1_000_000, 1_000_000);
    const before = (await fetch(`${nginx.url}/etag-change.bin`, { method: "HEAD" })).headers.get("etag");
    await writeFile(path, Buffer.alloc(64, 2));
    await utimes(path, 1_000_010, 1_000_010);
    const after = (await fetch(`${nginx.url}/etag-change.bin`, { method: "HEAD" })).headers.get("etag");
    expect(before).toBe('"f4240-40"');
    expect(after).toBe('"f424a-40"');
  });

  it("answers the Hub's resolve path with a 302 to the CDN path and X-Repo-Commit", async () => {
    const [org, repo] = HTTP_FIXTURES.hubRepo.split("/");
    const res = await fetch(
      `${nginx.url}/${org}/${repo}/resolve/main/model.safetensors.index.json`,
      noRedirect,
    );
    expect(res.status).toBe(302);
    expect(res.headers.get("location")).toBe(`/cdn/${org}/${repo}/model.safetensors.index.json`);
    expect(res.headers.get("x-repo-commit")).toBe(HUB_COMMIT);
    const commit = "a".repeat(40);
    const pinned = await fetch(
      `${nginx.url}/${org}/${repo}/resolve/${commit}/model.safetensors.index.json`,
      noRedirect,
    );
    expect(pinned.headers.get("x-repo-commit")).toBe(commit);
    const missing = await fetch(`${nginx.url}/${org}/${repo}/resolve/main/nope.json`, noRedirect);
    expect(missing.status).toBe(404);
    // The Hub origin redirects to the CDN on another origin (absolute Location).
    const hub = await fetch(
      `${nginx.hubUrl}/${org}/${repo}/resolve/main/model.safetensors.index.json`,
      noRedirect,
    );
    expect(hub.status).toBe(302);
    expect(hub.headers.get("location")).toBe(`${nginx.url}/cdn/${org}/${repo}/model.safetensors.index.json`);
    const followed = await fetch(`${nginx.hubUrl}/${org}/${repo}/resolve/main/model.safetensors.index.json`);
    expect(JSON.parse(await followed.text())).toHaveProperty("weight_map");
  });

  it("logs each request's Range, conditions, Authorization and bytes sent", async () => {
    const uri = `/${file}?log-probe`;
    const res = await fetch(`${nginx.url}${uri}`, {
      headers: { range: "bytes=100-199", "if-match": '"x"', authorization: "Bearer t" },
    });
    await res.body?.cancel();
    const ok = await fetch(`${nginx.url}${uri}`, { headers: { range: "bytes=100-199" } });
    await ok.arrayBuffer();
    const lines = (await readAccessLog(nginx.accessLogPath)).filter((l) => l.uri === uri);
    expect(lines).toEqual([
      expect.objectContaining({
        status: 412,
        range: "bytes=100-199",
        ifMatch: '"x"',
        authorization: "Bearer t",
      }),
      expect.objectContaining({ status: 206, bytes: 100, server: "main", authorization: "" }),
    ]);
  });
});

describe("the fault proxy's HTTP faults in front of nginx", () => {
  let proxy: FaultProxy;
  beforeAll(async () => {
    proxy = await startFaultProxy(nginx.url, { retryAfterSeconds: 7 });
  });
  afterAll(() => proxy.close());

  it("503-retry-after answers 503 with Retry-After; ignore-range answers 200 with the whole file", async () => {
    proxy.setFault(() => "503-retry-after");
    const busy = await fetch(`${proxy.endpoint}/${file}`, { headers: { range: "bytes=0-9" } });
    expect(busy.status).toBe(503);
    expect(busy.headers.get("retry-after")).toBe("7");
    await busy.body?.cancel();
    proxy.setFault(() => "ignore-range");
    const whole = await fetch(`${proxy.endpoint}/${file}`, { headers: { range: "bytes=0-9" } });
    expect(whole.status).toBe(200);
    expect(whole.headers.get("content-range")).toBeNull();
    expect((await whole.arrayBuffer()).byteLength).toBe((await stat(join(nginx.root, file))).size);
    // A request without Range passes unchanged.
    const plain = await fetch(`${proxy.endpoint}/${HTTP_FIXTURES.hubRepo}/model.safetensors.index.json`);
    expect(plain.status).toBe(200);
    await plain.arrayBuffer();
    expect(proxy.stats.faults).toEqual({ "503-retry-after": 1, "ignore-range": 1 });
    proxy.setFault(() => undefined);
  });

  it("passes the Hub's relative redirect through, so the CDN request comes back to the proxy", async () => {
    const before = proxy.stats.requests;
    const res = await fetch(
      `${proxy.endpoint}/${HTTP_FIXTURES.hubRepo}/resolve/main/model.safetensors.index.json`,
    );
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    expect(proxy.stats.requests - before).toBe(2);
  });
});
