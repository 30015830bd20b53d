import { HeadObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { emptyTensor, load, save, type Tensor } from "@dcpjs/core";
import {
  type S3ClientConfig,
  S3ReaderConstructor,
  S3StorageReader,
  S3StorageWriter,
  THROTTLE_MAX_PREFIXES,
  throttleS3Client,
  throttleState,
} from "@dcpjs/s3";
import { headObject } from "@dcpjs/s3/extend";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FaultProxy, startFaultProxy } from "../support/fault-proxy.js";
import { freshUri, s3Server, testClient } from "../support/s3.js";
import { randomTensor, sameTensor } from "../support/tensors.js";

const MiB = 1024 * 1024;
const state = (): Record<string, Tensor> => {
  const sd: Record<string, Tensor> = { big: randomTensor("float32", [4 * MiB], 1) }; // 16 MiB: 2 parts
  for (let i = 0; i < 8; i++) sd[`small${i}`] = randomTensor("int32", [2000 + i], i + 2);
  return sd;
};
const zeros = (sd: Record<string, Tensor>): Record<string, Tensor> =>
  Object.fromEntries(Object.entries(sd).map(([k, t]) => [k, emptyTensor(t.dtype, t.shape)]));

let proxy: FaultProxy;
beforeAll(async () => {
  proxy = await startFaultProxy(s3Server().endpoint);
});
afterAll(async () => {
  await proxy.close();
});

/** Every request answered `503 SlowDown` with probability `rate`. */
const slowDown = (rate: number) => () => (Math.random() < rate ? ("503" as const) : undefined);
const proxied = (config: S3ClientConfig = {}) =>
  testClient({ endpoint: proxy.endpoint, socketTimeoutMs: 5000, connectionTimeoutMs: 2000, ...config });

describe("S3 under a 503 SlowDown storm (through the fault proxy)", () => {
  it("at 50 %: save and load (two readers) are byte-exact, and the prefix's concurrency limit was lowered", async () => {
    const client = proxied();
    const uri = freshUri();
    const sd = state();
    proxy.setFault(slowDown(0.5));
    try {
      await save(sd, { storageWriter: new S3StorageWriter({ path: uri, client, threadCount: 4 }) });
      for (const reader of [S3ReaderConstructor.dcpOptimized(), S3ReaderConstructor.sequential()]) {
        const out = zeros(sd);
        await load(out, {
          storageReader: new S3StorageReader({
            path: uri,
            client,
            threadCount: 4,
            readerConstructor: reader,
          }),
        });
        for (const k of Object.keys(sd)) expect(sameTensor(out[k]!, sd[k]!)).toBe(true);
      }
    } finally {
      proxy.setFault(() => undefined);
    }
    // The checkpoint's folder has its own limiter: lowered from its ceiling of 16 (halved at least once).
    const own = throttleState(client).get(`${uri.slice(5)}/`);
    expect(own).toBeDefined();
    expect(own!.throttled).toBeGreaterThan(0);
    expect(own!.decreases).toBeGreaterThan(0);
    expect(own!.lowest).toBeLessThanOrEqual(8);
  }, 120_000);

  it("at 80 %: the round finishes byte-exact or fails with a typed error — never hangs", async () => {
    const client = proxied({ throttle: { timeoutMs: 20_000, maxDelayMs: 500 } }); // shorter pauses: a shorter test
    const uri = freshUri();
    const sd = state();
    proxy.setFault(slowDown(0.8));
    try {
      const outcome = await (async () => {
        await save(sd, { storageWriter: new S3StorageWriter({ path: uri, client, threadCount: 4 }) });
        const out = zeros(sd);
        await load(out, { storageReader: new S3StorageReader({ path: uri, client, threadCount: 4 }) });
        return Object.keys(sd).every((k) => sameTensor(out[k]!, sd[k]!));
      })().catch((e: unknown) => e);
      if (outcome !== true) expect(outcome).toMatchObject({ code: expect.stringMatching(/^[A-Z_]+$/) });
    } finally {
      proxy.setFault(() => undefined);
    }
  }, 150_000);

  it("at 100 %: the save fails with a ThrottledError (code THROTTLED) once throttle.timeoutMs has passed, naming SlowDown", async () => {
    const client = proxied({ throttle: { timeoutMs: 1500 } });
    const uri = freshUri();
    proxy.setFault(slowDown(1));
    const before = proxy.stats.requests;
    try {
      const error = await save(state(), { storageWriter: new S3StorageWriter({ path: uri, client }) }).catch(
        (e: unknown) => e,
      );
      const root = (error as { failures?: { error: unknown }[] }).failures?.[0]?.error ?? error;
      expect(root).toMatchObject({ name: "ThrottledError", code: "THROTTLED" });
      // Its own code reaches the caller: a retry policy keyed on code tells it from a transport failure.
      expect((error as { code?: string }).code).toBe("THROTTLED");
      expect((root as Error).message).toMatch(
        /SlowDown \(503\).*throttle\.timeoutMs|throttle\.timeoutMs.*SlowDown \(503\)/,
      );
    } finally {
      proxy.setFault(() => undefined);
    }
    // The SDK's own retries did not start the budget over: a few dozen attempts, not maxAttempts × that.
    expect(proxy.stats.requests - before).toBeLessThan(200);
  }, 60_000);

  it("your own client gets the same handling from throttleS3Client; throttle: false builds a client without it", async () => {
    const server = s3Server();
    const mine = throttleS3Client(
      new S3Client({
        endpoint: proxy.endpoint,
        region: server.region,
        forcePathStyle: true,
        credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
        maxAttempts: 1,
      }),
      { timeoutMs: 300 },
    );
    proxy.setFault(slowDown(1));
    try {
      const error = await mine
        .send(new HeadObjectCommand({ Bucket: server.bucket, Key: "tests/throttled/x" }))
        .catch((e: unknown) => e);
      expect(error).toMatchObject({ name: "ThrottledError", code: "THROTTLED" });
    } finally {
      proxy.setFault(() => undefined);
    }
    expect(throttleState(mine).get(`${server.bucket}/tests/throttled/`)!.throttled).toBeGreaterThan(1);
    expect(throttleState(proxied({ throttle: false })).size).toBe(0);
  });

  it("an AbortSignal settles a request waiting for a throttle slot, and one backing off, at once; nothing is left behind", async () => {
    const server = s3Server();
    // One slot, pauses of up to a minute: only the abort can end either wait soon.
    const client = proxied({
      throttle: { maxConcurrency: 1, baseDelayMs: 60_000, maxDelayMs: 60_000, timeoutMs: 600_000 },
    });
    // dcpjs's HEAD (as a load's size check sends it): the SDK's abort error mapped with the signal.
    const head = (key: string, signal: AbortSignal) =>
      headObject(
        {
          client,
          bucket: server.bucket,
          key: `tests/abort-throttle/${key}`,
          uri: `s3://${server.bucket}/${key}`,
        },
        signal,
      ).then(
        () => expect.unreachable("expected a rejection"),
        (e: unknown) => ({ error: e as { code?: string; name?: string }, at: performance.now() }),
      );
    const limiter = () => throttleState(client).get(`${server.bucket}/tests/abort-throttle/`)!;
    const until = async (ok: () => boolean) => {
      for (let i = 0; i < 500 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
      expect(ok()).toBe(true);
    };
    proxy.setFault(slowDown(1));
    try {
      // The first request is answered 503 and backs off; the second waits for the one slot.
      const first = new AbortController();
      const second = new AbortController();
      const backingOff = head("a", first.signal);
      await until(() => limiter()?.throttled === 1);
      // The backing-off request gave its slot back; hold it with a stalled request, so the next waits.
      proxy.setFault(() => "stall");
      const stalled = new AbortController();
      const holding = head("b", stalled.signal);
      await until(() => limiter().inFlight === 1);
      const waiting = head("c", second.signal);
      await until(() => limiter().waiting === 1);
      const requests = proxy.stats.requests;
      let at = performance.now();
      second.abort();
      const waited = await waiting;
      expect(waited.error.code).toBe("ABORTED");
      expect(waited.at - at).toBeLessThan(5_000); // generous: the wait it ends lasts minutes
      expect(limiter().waiting).toBe(0);
      at = performance.now();
      first.abort();
      const backedOff = await backingOff;
      expect(backedOff.error.code).toBe("ABORTED");
      expect(backedOff.at - at).toBeLessThan(5_000);
      stalled.abort();
      await holding;
      // Nothing left behind: no slot held, nobody waiting, no request sent after the aborts.
      await new Promise((r) => setTimeout(r, 300));
      expect([limiter().inFlight, limiter().waiting]).toEqual([0, 0]);
      expect(proxy.stats.requests).toBe(requests);
    } finally {
      proxy.setFault(() => undefined);
    }
  }, 30_000);

  it(`a client keeps at most THROTTLE_MAX_PREFIXES limiters: idle ones at their ceiling are dropped, oldest first`, async () => {
    const server = s3Server();
    const client = testClient();
    const n = THROTTLE_MAX_PREFIXES + 50;
    let next = 0;
    const worker = async () => {
      for (let i = next++; i < n; i = next++)
        await client
          .send(new HeadObjectCommand({ Bucket: server.bucket, Key: `tests/many-prefixes/${i}/x` }))
          .catch(() => undefined); // NotFound: the request is what counts
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    const state = throttleState(client);
    expect(state.size).toBeLessThanOrEqual(THROTTLE_MAX_PREFIXES);
    expect(state.has(`${server.bucket}/tests/many-prefixes/0/`)).toBe(false); // the oldest went first
    expect(state.has(`${server.bucket}/tests/many-prefixes/${n - 1}/`)).toBe(true);
  }, 60_000);
});
