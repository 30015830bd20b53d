import { HeadObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { emptyTensor, load, save, type Tensor } from "@dcpjs/core";
import {
  type S3ClientConfig,
  S3ReaderConstructor,
  S3StorageReader,
  S3StorageWriter,
  throttleS3Client,
  throttleState,
} from "@dcpjs/s3";
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

  it("at 100 %: the save fails with a ThrottledError (IO_ERROR) once throttle.timeoutMs has passed, naming SlowDown", async () => {
    const client = proxied({ throttle: { timeoutMs: 1500 } });
    const uri = freshUri();
    proxy.setFault(slowDown(1));
    const before = proxy.stats.requests;
    try {
      const error = await save(state(), { storageWriter: new S3StorageWriter({ path: uri, client }) }).catch(
        (e: unknown) => e,
      );
      const root = (error as { failures?: { error: unknown }[] }).failures?.[0]?.error ?? error;
      expect(root).toMatchObject({ name: "ThrottledError", code: "IO_ERROR" });
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
      expect(error).toMatchObject({ name: "ThrottledError", code: "IO_ERROR" });
    } finally {
      proxy.setFault(() => undefined);
    }
    expect(throttleState(mine).get(`${server.bucket}/tests/throttled/`)!.throttled).toBeGreaterThan(1);
    expect(throttleState(proxied({ throttle: false })).size).toBe(0);
  });
});
