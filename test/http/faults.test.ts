// The HTTP backend through the fault proxy in front of a real nginx: every kind of fault at 5% and
// 25% of requests, on the three fixtures (a dcpjs checkpoint, a torch-written one, a Hub-like
// sharded safetensors repository read through hf://). Every load is byte-exact or a coded
// CheckpointError naming the file; no unhandled rejection; no load outlives its test's timeout.
import { randomInt } from "node:crypto";
import { existsSync, readFileSync, renameSync, utimesSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { CheckpointError, CheckpointException, loadStateDictFromKeys, type StateDict } from "@dcpjs/core";
import { compareStateDicts } from "@dcpjs/demo-kit";
import { createFetchTransport, HttpStorageReader, type HttpTransport } from "@dcpjs/http";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it } from "vitest";
import { type Fault, type FaultProxy, HTTP_FAULTS, startFaultProxy } from "../support/fault-proxy.js";
import { copyFixture, HTTP_FIXTURES } from "../support/http-fixtures.js";
import { readAccessLog } from "../support/nginx-server.js";

const nginx = inject("nginx");
/** The per-request timeout the readers get, so that a stalled response ends quickly. */
const TIMEOUT_MS = 1500;
/** Each test's bound: a load that hangs fails its test instead of the suite. */
const TEST_MS = 90_000;

/** The codes a load may end with when a fault outlasts the retries (never INVALID_*, NOT_FOUND…). */
const FAULT_CODES = new Set([
  "IO_ERROR",
  "TIMEOUT",
  "THROTTLED",
  "CHECKSUM_MISMATCH",
  "TRUNCATED",
  "MALFORMED_METADATA",
  "MALFORMED_DATA",
]);

interface Fixture {
  readonly name: string;
  /** Its path under the served root (and the local folder the expected values are loaded from). */
  readonly path: string;
  /** The checkpoint id the HTTP reader gets. */
  readonly id: (endpoint: string) => string;
  /** The file names a failure may name. */
  readonly files: RegExp;
  /** Whether its files carry checksums (a flipped byte is then detected; torch and safetensors carry none). */
  readonly checksummed: boolean;
}

const [org, repo] = HTTP_FIXTURES.hubRepo.split("/") as [string, string];
const FIXTURES: readonly Fixture[] = [
  {
    name: "dcpjs DCP",
    path: HTTP_FIXTURES.dcpjs,
    id: (e) => `${e}/${HTTP_FIXTURES.dcpjs}`,
    files: /\.metadata|__\d+_\d+(\.[0-9a-f]+)?\.distcp/,
    checksummed: true,
  },
  {
    name: "torch DCP",
    path: HTTP_FIXTURES.torch,
    id: (e) => `${e}/${HTTP_FIXTURES.torch}`,
    files: /\.metadata|__\d+_\d+(\.[0-9a-f]+)?\.distcp/,
    checksummed: false,
  },
  {
    name: "hf:// sharded safetensors",
    path: HTTP_FIXTURES.hubRepo,
    id: () => `hf://${org}/${repo}`,
    files: /model(-\d{5}-of-\d{5})?\.safetensors(\.index\.json)?/,
    checksummed: false,
  },
];

/** What the local folder holds: the oracle every load over HTTP must equal byte for byte. */
const expected = new Map<string, StateDict>();
let proxy: FaultProxy;
let unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);

beforeAll(async () => {
  proxy = await startFaultProxy(nginx.url, { retryAfterSeconds: 1 });
  for (const f of FIXTURES)
    expected.set(
      f.name,
      (await loadStateDictFromKeys({ checkpointId: join(nginx.root, f.path) })) as StateDict,
    );
});
afterAll(() => proxy?.close());
beforeEach(() => {
  unhandled = [];
  process.on("unhandledRejection", onUnhandled);
});
afterEach(async () => {
  proxy.setFault(() => undefined);
  await new Promise((r) => setTimeout(r, 20));
  process.off("unhandledRejection", onUnhandled);
  expect(unhandled).toEqual([]);
});

/** The transport the readers of the running describe block use (undefined: the package's default). */
let transport: HttpTransport | undefined;

/** A reader through the proxy (hf:// ids resolved against it, as HF_ENDPOINT would). */
const reader = (f: Fixture, extra: { maxAttempts?: number } = {}) =>
  new HttpStorageReader({
    url: f.id(proxy.endpoint),
    hfEndpoint: proxy.endpoint,
    timeoutMs: TIMEOUT_MS,
    ...(transport ? { transport } : {}),
    ...extra,
  });

/** Loads every key of `f` over HTTP: the state dict, or the failing rank's own error. */
async function loadOver(f: Fixture, extra: { maxAttempts?: number } = {}) {
  try {
    const stateDict = await loadStateDictFromKeys({
      checkpointId: f.id(proxy.endpoint),
      storageReader: reader(f, extra),
    });
    return { stateDict: stateDict as StateDict };
  } catch (e) {
    const error = e instanceof CheckpointException ? e.failures[0]!.error : e;
    return { error };
  }
}

/** Asserts a load's outcome: byte-exact, or a coded CheckpointError among `codes` naming one of the fixture's files. */
function expectExactOrNamed(f: Fixture, outcome: Awaited<ReturnType<typeof loadOver>>, codes: Set<string>) {
  if (outcome.stateDict) {
    const cmp = compareStateDicts(expected.get(f.name)!, outcome.stateDict, true);
    expect(cmp.mismatches).toEqual([]);
    return "exact";
  }
  expect(outcome.error).toBeInstanceOf(CheckpointError);
  const error = outcome.error as CheckpointError;
  expect(codes, `${error.code}: ${error.message}`).toContain(error.code);
  expect(error.message).toMatch(f.files);
  return error.code;
}

/** Injects `fault` into each request with probability `rate`. */
const atRate = (fault: Fault, rate: number) => () => (Math.random() < rate ? fault : undefined);

/** Loads every fixture from a server that ignores Range on every request: each byte-exact. */
async function ignoredRangeRound(): Promise<void> {
  for (const f of FIXTURES) {
    proxy.setFault(() => "ignore-range");
    const outcome = await loadOver(f);
    proxy.setFault(() => undefined);
    expect(expectExactOrNamed(f, outcome, new Set())).toBe("exact");
  }
}

/** Loads every fixture with `fault` injected at `rate` until it was injected: each byte-exact or a coded error naming the file. */
async function faultRounds(fault: Fault, rate: number): Promise<void> {
  const outcomes: string[] = [];
  const injected = () => proxy.stats.faults[fault] ?? 0;
  const before = injected();
  // Rounds over the fixtures until the fault was injected (at 5% a round of a few requests often sees none), at most 40.
  for (let round = 0; round < 40 && (round === 0 || injected() === before); round++) {
    for (const f of FIXTURES) {
      // Without checksums a flipped byte cannot be told from data: only the checksummed fixture takes flips.
      if (fault === "flip" && !f.checksummed) continue;
      proxy.setFault(atRate(fault, rate));
      const outcome = await loadOver(f);
      proxy.setFault(() => undefined);
      outcomes.push(`${f.name}: ${expectExactOrNamed(f, outcome, FAULT_CODES)}`);
    }
  }
  expect(injected()).toBeGreaterThan(before);
  // At 5% every fault is one the reader retries or repairs: the loads succeed.
  if (rate <= 0.05) expect(outcomes.filter((o) => !o.endsWith("exact"))).toEqual([]);
}

describe("HTTP loads through a fault-injecting proxy in front of nginx", () => {
  describe.each([0.05, 0.25])("at a %s per-request fault rate", (rate) => {
    it.each(HTTP_FAULTS)(
      "%s: every fixture loads byte-exact, or fails with a coded error naming the file",
      (fault) => faultRounds(fault, rate),
      TEST_MS,
    );
  });

  it(
    "a server that ignores Range on every request: loads are byte-exact (the whole file streamed and sliced)",
    async () => {
      await ignoredRangeRound();
    },
    TEST_MS,
  );

  it(
    "every response of one file failing: IO_ERROR naming that file after the retries, in bounded time",
    async () => {
      const f = FIXTURES[2]!;
      const shard = "model-00002-of-00003.safetensors";
      proxy.setFault((req) => (req.url.includes(shard) ? "500" : undefined));
      const started = Date.now();
      const outcome = await loadOver(f, { maxAttempts: 3 });
      expect(outcome.error).toBeInstanceOf(CheckpointError);
      expect((outcome.error as CheckpointError).code).toBe("IO_ERROR");
      expect((outcome.error as Error).message).toContain(shard);
      expect(Date.now() - started).toBeLessThan(30_000);
    },
    TEST_MS,
  );

  it(
    "every response stalling: the load fails with a coded error, not a hang",
    async () => {
      const f = FIXTURES[0]!;
      proxy.setFault((req) => (req.url.includes(".distcp") ? "stall" : undefined));
      const started = Date.now();
      const outcome = await loadOver(f, { maxAttempts: 2 });
      expect(outcome.error).toBeInstanceOf(CheckpointError);
      expect(FAULT_CODES).toContain((outcome.error as CheckpointError).code);
      expect((outcome.error as Error).message).toMatch(f.files);
      expect(Date.now() - started).toBeLessThan(30_000);
    },
    TEST_MS,
  );
});

/**
 * Rewrites `path` atomically with `bytes` and a new mtime, so that nginx's ETag changes. Synchronous:
 * called from the proxy's decision, it is done before the request it decided on is forwarded.
 */
function replaceFile(path: string, bytes: Uint8Array): void {
  const tmp = `${path}.new-${randomInt(1e9)}`;
  writeFileSync(tmp, bytes);
  const when = Date.now() / 1000 + randomInt(10, 100_000);
  utimesSync(tmp, when, when);
  renameSync(tmp, path);
}

describe("a file replaced on the server while it is loaded", () => {
  it(
    "SOURCE_CHANGED names the replaced shard; never a load with mixed bytes",
    async () => {
      const f = FIXTURES[2]!;
      const to = `${org}/replaced-${randomInt(1e9)}`;
      await copyFixture(nginx.root, f.path, to);
      const shard = "model-00001-of-00003.safetensors";
      const path = join(nginx.root, to, shard);
      const original = await readFile(path);
      // The same layout (header) with every data byte changed: a mixed load would differ from both.
      const headerEnd = 8 + Number(original.readBigUInt64LE(0));
      const other = Buffer.from(original);
      for (let i = headerEnd; i < other.length; i++) other[i]! ^= 0x55;
      let requests = 0;
      proxy.setFault((req) => {
        // After the reader's first contact with the shard's bytes (its header, at the CDN path the
        // resolve URL redirects to), before the data.
        if (
          req.method === "GET" &&
          req.url.startsWith("/cdn/") &&
          req.url.endsWith(shard) &&
          ++requests === 2
        )
          replaceFile(path, other);
        return undefined;
      });
      const outcome = await loadStateDictFromKeys({
        checkpointId: `hf://${org}/${to.split("/")[1]}`,
        storageReader: new HttpStorageReader({
          url: `hf://${org}/${to.split("/")[1]}`,
          hfEndpoint: proxy.endpoint,
          timeoutMs: TIMEOUT_MS,
          maxConnections: 1,
        }),
      }).then(
        (stateDict) => ({ stateDict }),
        (e: unknown) => ({ error: e instanceof CheckpointException ? e.failures[0]!.error : e }),
      );
      expect(requests).toBeGreaterThanOrEqual(2);
      if ("stateDict" in outcome) {
        const log = (await readAccessLog(nginx.accessLogPath)).filter((l) =>
          l.uri.includes(to.split("/")[1]!),
        );
        throw new Error(
          `Expected SOURCE_CHANGED, got a load that resolved (${compareStateDicts(expected.get(f.name)!, outcome.stateDict, true).mismatches.length} tensors differ from the original); requests:\n${log.map((l) => `${l.method} ${l.uri} ${l.status} ${l.bytes} range=${l.range} if-match=${l.ifMatch} if-range=${l.ifRange} etag=${l.etag}`).join("\n")}`,
        );
      }
      expect(outcome.error).toBeInstanceOf(CheckpointError);
      expect((outcome.error as CheckpointError).code).toBe("SOURCE_CHANGED");
      expect((outcome.error as Error).message).toContain(shard);
    },
    TEST_MS,
  );

  it.each([0.05, 0.25])(
    "files touched (new mtime, same bytes) in %s of requests: each load is byte-exact or SOURCE_CHANGED naming the file",
    async (rate) => {
      for (const f of FIXTURES) {
        const to = `${f.path.split("/")[0]}/touched-${randomInt(1e9)}`;
        await copyFixture(nginx.root, f.path, to);
        const copy: Fixture = {
          ...f,
          id: (e) => (f.id(e).startsWith("hf://") ? `hf://${to}` : `${e}/${to}`),
        };
        proxy.setFault((req) => {
          const name = req.url.split("?")[0]!.split("/").at(-1)!;
          if (req.method === "GET" && req.url.includes(to.split("/")[1]!) && Math.random() < rate) {
            const path = join(nginx.root, to, name);
            if (existsSync(path)) replaceFile(path, readFileSync(path));
          }
          return undefined;
        });
        const outcome = await (async () => {
          try {
            const stateDict = await loadStateDictFromKeys({
              checkpointId: copy.id(proxy.endpoint),
              storageReader: new HttpStorageReader({
                url: copy.id(proxy.endpoint),
                hfEndpoint: proxy.endpoint,
                timeoutMs: TIMEOUT_MS,
              }),
            });
            return { stateDict: stateDict as StateDict };
          } catch (e) {
            return { error: e instanceof CheckpointException ? e.failures[0]!.error : e };
          }
        })();
        proxy.setFault(() => undefined);
        expectExactOrNamed(copy, outcome, new Set(["SOURCE_CHANGED"]));
      }
    },
    TEST_MS,
  );
});

describe("the fetch transport (the browser's), through the same proxy", () => {
  beforeAll(() => {
    // redirects followed by fetch itself, as in a browser
    transport = createFetchTransport();
  });
  afterAll(() => {
    transport = undefined;
  });
  it.each(HTTP_FAULTS)(
    "%s at a 0.05 per-request rate: every fixture loads byte-exact (retried or repaired)",
    (fault) => faultRounds(fault, 0.05),
    TEST_MS,
  );
  it(
    "a server that ignores Range: byte-exact; every response stalling: a coded error, not a hang",
    async () => {
      await ignoredRangeRound();
      const f = FIXTURES[0]!;
      proxy.setFault((req) => (req.url.includes(".distcp") ? "stall" : undefined));
      const outcome = await loadOver(f, { maxAttempts: 2 });
      expect(FAULT_CODES).toContain((outcome.error as CheckpointError).code);
    },
    TEST_MS,
  );
});
