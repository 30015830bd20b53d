// The HTTP backend against a real nginx without faults: the three fixtures byte-exact through the
// registry's ids, the Hub's redirect to a CDN on another origin (the token stays with the Hub, the
// revision is pinned to the commit), a partial load's bytes at the server, a missing checkpoint.
import "@dcpjs/http";
import { join } from "node:path";
import { CheckpointError, isTensor, loadStateDictFromKeys, type StateDict, tensorBytes } from "@dcpjs/core";
import { convertCheckpoint, inspectCheckpoint } from "@dcpjs/core/ops";
import { compareStateDicts } from "@dcpjs/demo-kit";
import { HttpStorageReader } from "@dcpjs/http";
import { afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { failureOf } from "../support/failure.js";
import { HTTP_FIXTURES } from "../support/http-fixtures.js";
import { type AccessLine, HUB_COMMIT, readAccessLog } from "../support/nginx-server.js";
import { tempDir } from "../support/tmp.js";

const nginx = inject("nginx");
const [org, repo] = HTTP_FIXTURES.hubRepo.split("/") as [string, string];
const local = (path: string) => join(nginx.root, path);

/** The access-log lines written while `fn` ran. */
async function linesDuring(fn: () => Promise<unknown>): Promise<AccessLine[]> {
  const before = (await readAccessLog(nginx.accessLogPath)).length;
  await fn();
  return (await readAccessLog(nginx.accessLogPath)).slice(before);
}

const expected = new Map<string, StateDict>();
beforeAll(async () => {
  for (const path of Object.values(HTTP_FIXTURES))
    expected.set(path, (await loadStateDictFromKeys({ checkpointId: local(path) })) as StateDict);
});
const savedEnv = process.env.HF_ENDPOINT;
afterEach(() => {
  if (savedEnv === undefined) delete process.env.HF_ENDPOINT;
  else process.env.HF_ENDPOINT = savedEnv;
});

describe("loads from a loopback nginx through the registered http:// and hf:// ids", () => {
  it.each([
    ["a dcpjs checkpoint", HTTP_FIXTURES.dcpjs, () => `${nginx.url}/${HTTP_FIXTURES.dcpjs}`],
    ["a torch-written checkpoint", HTTP_FIXTURES.torch, () => `${nginx.url}/${HTTP_FIXTURES.torch}`],
    ["a sharded safetensors folder", HTTP_FIXTURES.hubRepo, () => `${nginx.url}/${HTTP_FIXTURES.hubRepo}`],
    ["a Hub repository (hf://, HF_ENDPOINT)", HTTP_FIXTURES.hubRepo, () => `hf://${org}/${repo}`],
  ])("%s loads byte-exact", async (_, path, id) => {
    process.env.HF_ENDPOINT = nginx.url;
    const sd = (await loadStateDictFromKeys({ checkpointId: id() })) as StateDict;
    expect(compareStateDicts(expected.get(path)!, sd, true).mismatches).toEqual([]);
  });

  it("hf:// through a Hub that redirects to a CDN on another origin: the token reaches the Hub only, every file is read at the commit", async () => {
    const lines = await linesDuring(async () => {
      const sd = (await loadStateDictFromKeys({
        checkpointId: `hf://${org}/${repo}`,
        storageReader: new HttpStorageReader({
          url: `hf://${org}/${repo}`,
          hfEndpoint: nginx.hubUrl,
          token: "hf_secret",
        }),
      })) as StateDict;
      expect(compareStateDicts(expected.get(HTTP_FIXTURES.hubRepo)!, sd, true).mismatches).toEqual([]);
    });
    const hub = lines.filter((l) => l.server === "hub");
    const cdn = lines.filter((l) => l.server === "main");
    expect(hub.length).toBeGreaterThan(0);
    expect(cdn.length).toBeGreaterThan(0);
    expect(hub.every((l) => l.authorization === "Bearer hf_secret")).toBe(true);
    expect(cdn.map((l) => l.authorization)).toEqual(cdn.map(() => ""));
    // After the first answer (X-Repo-Commit), the revision is the commit.
    const revisions = hub.map((l) => /\/resolve\/([^/]+)\//.exec(l.uri)?.[1]);
    expect(new Set(revisions.slice(1))).toEqual(new Set([HUB_COMMIT]));
  });

  it("hf:// through a Hub whose resolve answers a relative 302 on the same origin: each file is resolved once, its reads go to /cdn/ directly", async () => {
    process.env.HF_ENDPOINT = nginx.url;
    const lines = await linesDuring(async () => {
      const sd = (await loadStateDictFromKeys({ checkpointId: `hf://${org}/${repo}` })) as StateDict;
      expect(compareStateDicts(expected.get(HTTP_FIXTURES.hubRepo)!, sd, true).mismatches).toEqual([]);
    });
    const resolves = lines.filter((l) => l.method === "GET" && l.uri.includes("/resolve/"));
    const reads = lines.filter((l) => l.method === "GET" && l.uri.startsWith("/cdn/"));
    const files = new Set(reads.map((l) => l.uri));
    expect(files.size).toBeGreaterThan(1);
    // one resolve per file read: its first contact; every later read goes to the CDN path
    const perFile = new Map<string, number>();
    for (const l of resolves) {
      const file = l.uri.slice(l.uri.indexOf("/resolve/") + "/resolve/".length).replace(/^[^/]+\//, "");
      perFile.set(file, (perFile.get(file) ?? 0) + 1);
    }
    expect([...perFile.values()].every((n) => n === 1)).toBe(true);
    const prefix = `/cdn/${org}/${repo}/`;
    for (const file of files) expect(perFile.get(file.slice(prefix.length))).toBe(1);
    // the shards' data reads (after each one's first 64 KiB) went to /cdn/ without a 302 first
    expect(reads.filter((l) => l.status === 206).length).toBeGreaterThan(
      resolves.filter((l) => l.status === 302).length,
    );
  });

  it("a partial load (2 of 24 tensors) reads those tensors' bytes, not the shards'", async () => {
    const keys = ["model.layers.3.weight", "model.layers.17.weight"];
    let loaded = 0;
    const lines = await linesDuring(async () => {
      const sd = (await loadStateDictFromKeys({
        checkpointId: `${nginx.url}/${HTTP_FIXTURES.hubRepo}`,
        keys,
      })) as StateDict;
      expect(Object.keys(sd).sort()).toEqual([...keys].sort());
      for (const v of Object.values(sd)) if (isTensor(v)) loaded += tensorBytes(v).byteLength;
    });
    // The data reads are the requests pinned to a file (If-Match); the rest are the probes of the
    // index and the shards' headers (one bounded read each).
    const data = lines.filter((l) => l.ifMatch !== "").reduce((n, l) => n + l.bytes, 0);
    expect(data).toBeGreaterThanOrEqual(loaded);
    expect(data).toBeLessThanOrEqual(1.1 * loaded);
  });

  it.each([
    ["a torch-written checkpoint", HTTP_FIXTURES.torch, () => `${nginx.url}/${HTTP_FIXTURES.torch}`],
    ["a Hub repository (hf://)", HTTP_FIXTURES.hubRepo, () => `hf://${org}/${repo}`],
  ])(
    "dcp inspect and dcp convert take %s over HTTP: the same entries, converted byte-exact",
    async (_, path, id) => {
      process.env.HF_ENDPOINT = nginx.url;
      const report = await inspectCheckpoint(id());
      const fromFolder = await inspectCheckpoint(local(path));
      expect(report.entries.map((e) => e.fqn)).toEqual(fromFolder.entries.map((e) => e.fqn));
      const dst = join(await tempDir(), "converted");
      await convertCheckpoint(id(), dst, { to: "dcpjs" });
      const sd = (await loadStateDictFromKeys({ checkpointId: dst })) as StateDict;
      expect(compareStateDicts(expected.get(path)!, sd, true).mismatches).toEqual([]);
    },
  );

  it("a checkpoint that is not there: INCOMPLETE_CHECKPOINT naming the URL, as for a local folder", async () => {
    const url = `${nginx.url}/ckpt/no-such-checkpoint`;
    const error = await failureOf(loadStateDictFromKeys({ checkpointId: url }));
    const localError = await failureOf(
      loadStateDictFromKeys({ checkpointId: local("ckpt/no-such-checkpoint") }),
    );
    expect(error).toBeInstanceOf(CheckpointError);
    expect(error.code).toBe(localError.code);
    expect(error.message).toContain(url);
  });
});
