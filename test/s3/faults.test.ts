import { CreateMultipartUploadCommand, ListMultipartUploadsCommand } from "@aws-sdk/client-s3";
import {
  CheckpointError,
  type CheckpointException,
  createLocalProcessGroups,
  emptyTensor,
  load,
  type StateDict,
  save,
  shardTensor,
  type Tensor,
} from "@dcpjs/core";
import {
  abortIncompleteUploads,
  parseS3Uri,
  S3ReaderConstructor,
  S3StorageReader,
  S3StorageWriter,
} from "@dcpjs/s3";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { FAULTS, type Fault, type FaultProxy, startFaultProxy } from "../support/fault-proxy.js";
import { freshUri, s3Server, testClient } from "../support/s3.js";
import { randomTensor, sameTensor } from "../support/tensors.js";

const MiB = 1024 * 1024;
const state = () => {
  const sd: StateDict = {
    big: randomTensor("float32", [3 * MiB], 1), // 12 MiB: a multipart upload, large ranged reads
    config: { lr: 0.5, name: "faults" },
  };
  for (let i = 0; i < 12; i++) sd[`small${i}`] = randomTensor("int32", [1000 + i], i + 2);
  return sd;
};
const target = (): StateDict => {
  const sd: StateDict = { big: emptyTensor("float32", [3 * MiB]), config: { lr: 0, name: "" } };
  for (let i = 0; i < 12; i++) sd[`small${i}`] = emptyTensor("int32", [1000 + i]);
  return sd;
};
const sameState = (a: StateDict, b: StateDict) =>
  Object.keys(b).every((k) =>
    k === "config"
      ? JSON.stringify(a[k]) === JSON.stringify(b[k])
      : sameTensor(a[k] as Tensor, b[k] as Tensor),
  );

const readers = [
  () => S3ReaderConstructor.sequential(),
  () => S3ReaderConstructor.rangeBased(),
  () => S3ReaderConstructor.dcpOptimized({ parallelThreshold: 4 * MiB }),
];

let proxy: FaultProxy;
let unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);
beforeAll(async () => {
  proxy = await startFaultProxy(s3Server().endpoint);
});
afterAll(async () => {
  await proxy.close();
});
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

/** A client through the proxy, with short timeouts so that stalls end quickly. */
const proxiedClient = (overrides = {}) =>
  testClient({ endpoint: proxy.endpoint, socketTimeoutMs: 1500, connectionTimeoutMs: 1000, ...overrides });

async function openUploads(uri: string): Promise<string[]> {
  const { bucket, key } = parseS3Uri(uri);
  const page = await testClient().send(
    new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: `${key}/` }),
  );
  return (page.Uploads ?? []).map((u) => u.Key!);
}

/** Injects `fault` into each request with probability `rate`. */
const atRate = (fault: Fault, rate: number) => () => (Math.random() < rate ? fault : undefined);

/** Every fault kind but the two with tests of their own: flips (repaired by re-reads) and stalls (timeouts). */
const KINDS = FAULTS.filter((f) => f !== "flip" && f !== "stall");

describe("S3 through a fault-injecting proxy in front of the real server", () => {
  describe.each([0.05, 0.25])("at a %s per-request fault rate", (rate) => {
    it.each(KINDS)(
      "%s: saves and loads are byte-exact, and no multipart upload is left",
      async (fault) => {
        const client = proxiedClient();
        const uri = freshUri();
        proxy.setFault(atRate(fault, rate));
        await save(state(), { storageWriter: new S3StorageWriter({ path: uri, client }) });
        for (const reader of readers) {
          const sd = target();
          await load(sd, {
            storageReader: new S3StorageReader({ path: uri, client, readerConstructor: reader() }),
          });
          expect(sameState(sd, state())).toBe(true);
        }
        proxy.setFault(() => undefined);
        expect(await openUploads(uri)).toEqual([]);
      },
      60_000,
    );
  });

  it.each([0.05, 0.25])(
    "flipped bytes in %s of responses (.metadata included): every load is byte-exact — damage is detected and requested again",
    async (rate) => {
      const client = proxiedClient();
      const uri = freshUri();
      await save(state(), { storageWriter: new S3StorageWriter({ path: uri, client }) });
      proxy.setFault(atRate("flip", rate));
      const before = proxy.stats.faults.flip ?? 0;
      // Rounds until some response was damaged (at 5% a round of ~8 GETs often sees none), at most 20.
      for (let round = 0; round < 20 && (round < 2 || (proxy.stats.faults.flip ?? 0) === before); round++) {
        for (const reader of readers) {
          const sd = target();
          await load(sd, {
            storageReader: new S3StorageReader({ path: uri, client, readerConstructor: reader() }),
          });
          expect(sameState(sd, state())).toBe(true);
        }
      }
      expect(proxy.stats.faults.flip ?? 0).toBeGreaterThan(before);
    },
    60_000,
  );

  it("a flipped byte at rest (every response damaged the same way) fails with CHECKSUM_MISMATCH naming the fqn", async () => {
    const client = proxiedClient({ maxAttempts: 2 });
    const uri = freshUri();
    await save(state(), { storageWriter: new S3StorageWriter({ path: uri, client }) });
    proxy.setFault((req) => (req.method === "GET" && !req.url.includes(".metadata") ? "flip" : undefined));
    const error = await load(target(), {
      storageReader: new S3StorageReader({ path: uri, client, clientConfig: { maxAttempts: 2 } }),
    }).catch((e: unknown) => e);
    expect((error as CheckpointException).failures[0]!.code).toBe("CHECKSUM_MISMATCH");
  }, 60_000);

  it("a partial read (a finer row sharding's blocks) damaged in transit is requested again; damaged at rest, its block is named", async () => {
    // [4096, 1024] float32 saved by 2 ranks; rank 1 of 3 reads blocks 5–7 of chunk 0 and 0–2 of chunk 1.
    const uri = freshUri();
    const w = randomTensor("float32", [4096, 1024], 11);
    await Promise.all(
      createLocalProcessGroups(2).map((pg) =>
        save(
          { w: shardTensor(w, { rank: pg.rank, worldSize: 2 }) },
          { storageWriter: new S3StorageWriter({ path: uri, client: testClient() }), processGroup: pg },
        ),
      ),
    );
    const expected = shardTensor(w, { rank: 1, worldSize: 3 }).shards[0]!.tensor;
    const rowShard = () => ({
      w: shardTensor(emptyTensor("float32", [4096, 1024]), { rank: 1, worldSize: 3 }),
    });
    const flips = () => proxy.stats.faults.flip ?? 0;
    // The first response of each data file damaged: both parts are read again, and the load is exact.
    const damaged = new Set<string>();
    proxy.setFault((req) => {
      if (req.method !== "GET" || !req.url.includes(".distcp")) return undefined;
      const file = req.url.split("?")[0]!;
      if (damaged.has(file)) return undefined;
      damaged.add(file);
      return "flip";
    });
    const before = flips();
    const sd = rowShard();
    await load(sd, { storageReader: new S3StorageReader({ path: uri, client: proxiedClient() }) });
    expect(flips() - before).toBe(2);
    expect(sameTensor(sd.w.shards[0]!.tensor, expected)).toBe(true);
    // Every response damaged: CHECKSUM_MISMATCH, naming the part and its block.
    proxy.setFault((req) => (req.method === "GET" && req.url.includes(".distcp") ? "flip" : undefined));
    const error = await load(rowShard(), {
      storageReader: new S3StorageReader({
        path: uri,
        client: proxiedClient({ maxAttempts: 2 }),
        clientConfig: { maxAttempts: 2 },
      }),
    }).catch((e: unknown) => e);
    const root = (error as CheckpointException).failures[0]!.error;
    expect(root).toMatchObject({ code: "CHECKSUM_MISMATCH", fqn: "w" });
    expect((root as Error).message).toMatch(
      /\(of the item @ \d+\+8388608\), running checksum at the end of block \d of 8/,
    );
  }, 60_000);

  it("lost CreateMultipartUpload responses leave no orphan upload behind the successful save, even when an abort's response is lost too", async () => {
    // Two strays (the first two CreateMultipartUpload answers lost), and the answer to the first
    // abort of a stray lost: its retry finds the upload gone (NoSuchUpload), and the other stray
    // must still be aborted.
    const client = proxiedClient();
    const uri = freshUri();
    let creates = 0;
    let aborts = 0;
    proxy.setFault((req) => {
      if (req.method === "POST" && /[?&]uploads(&|=|$)/.test(req.url))
        return creates++ < 2 ? "lost-response" : undefined;
      if (req.method === "DELETE" && req.url.includes("uploadId="))
        return aborts++ === 0 ? "lost-response" : undefined;
      return undefined;
    });
    await save(state(), { storageWriter: new S3StorageWriter({ path: uri, client }) });
    expect(creates).toBe(3); // the SDK retried it twice
    expect(aborts).toBeGreaterThanOrEqual(3); // two strays, one abort retried
    expect(await openUploads(uri)).toEqual([]);
    const sd = target();
    await load(sd, { storageReader: new S3StorageReader({ path: uri, client }) });
    expect(sameState(sd, state())).toBe(true);
  }, 60_000);

  it("an abort of an upload that keeps failing does not stop the others: they are aborted, then its error is thrown", async () => {
    const uri = freshUri();
    const { bucket, key } = parseS3Uri(uri);
    const ids: string[] = [];
    for (const name of ["a.distcp", "b.distcp", "c.distcp"]) {
      const out = await testClient().send(
        new CreateMultipartUploadCommand({ Bucket: bucket, Key: `${key}/${name}` }),
      );
      ids.push(out.UploadId!);
    }
    proxy.setFault((req) =>
      req.method === "DELETE" && req.url.includes(`uploadId=${ids[0]}`) ? "500" : undefined,
    );
    const error = await abortIncompleteUploads(uri, { client: proxiedClient({ maxAttempts: 2 }) }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(CheckpointError);
    proxy.setFault(() => undefined);
    expect(await openUploads(uri)).toEqual([`${key}/a.distcp`]);
    expect(await abortIncompleteUploads(uri, { client: testClient() })).toEqual([`${key}/a.distcp`]);
  }, 60_000);

  it("overwrite: false: a lost answer to the commit's PUT of .metadata is found to be this save's own, not CHECKPOINT_EXISTS", async () => {
    const client = proxiedClient();
    const uri = freshUri();
    let puts = 0;
    proxy.setFault((req) =>
      req.method === "PUT" && req.url.split("?")[0]!.endsWith("/.metadata") && puts++ === 0
        ? "lost-response"
        : undefined,
    );
    await save(state(), { storageWriter: new S3StorageWriter({ path: uri, client, overwrite: false }) });
    expect(puts).toBe(2); // the SDK retried it, and S3 refused the retry (412)
    const sd = target();
    await load(sd, { storageReader: new S3StorageReader({ path: uri, client }) });
    expect(sameState(sd, state())).toBe(true);
    // Another save's .metadata at that key is still CHECKPOINT_EXISTS.
    const other = await save(state(), {
      storageWriter: new S3StorageWriter({ path: uri, client, overwrite: false }),
    }).catch((e: unknown) => e);
    expect((other as CheckpointException).failures[0]!.code).toBe("CHECKPOINT_EXISTS");
  }, 60_000);

  it("a stalled server ends a save and a load within the configured timeouts, with a typed IO_ERROR", async () => {
    const client = proxiedClient({ socketTimeoutMs: 500, maxAttempts: 2 });
    const uri = freshUri();
    proxy.setFault(() => "stall");
    let started = performance.now();
    const saveError = await save(state(), {
      storageWriter: new S3StorageWriter({ path: uri, client }),
    }).catch((e: unknown) => e);
    expect(performance.now() - started).toBeLessThan(15_000);
    expect(saveError).toBeInstanceOf(CheckpointError);
    expect((saveError as CheckpointException).failures[0]!.code).toBe("IO_ERROR");

    proxy.setFault(() => undefined);
    await save(state(), { storageWriter: new S3StorageWriter({ path: uri, client }) });
    proxy.setFault((req) => (req.method === "GET" && !req.url.includes(".metadata") ? "stall" : undefined));
    started = performance.now();
    const loadError = await load(target(), {
      storageReader: new S3StorageReader({ path: uri, client }),
    }).catch((e: unknown) => e);
    expect(performance.now() - started).toBeLessThan(15_000);
    expect((loadError as CheckpointException).failures[0]!.code).toBe("IO_ERROR");
  }, 60_000);

  it("an abort during a stalled save settles within 1 s and leaves no multipart upload", async () => {
    const client = proxiedClient({ socketTimeoutMs: 30_000 });
    const uri = freshUri();
    let parts = 0;
    proxy.setFault((req) =>
      req.method === "PUT" && req.url.includes("partNumber=") && parts++ >= 1 ? "stall" : undefined,
    );
    const controller = new AbortController();
    const done = save(state(), {
      storageWriter: new S3StorageWriter({ path: uri, client }),
      signal: controller.signal,
    }).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 1500));
    controller.abort();
    const abortedAt = performance.now();
    const error = await done;
    expect(performance.now() - abortedAt).toBeLessThan(1000);
    expect((error as CheckpointException).failures[0]!.code).toBe("ABORTED");
    proxy.setFault(() => undefined);
    expect(await openUploads(uri)).toEqual([]);
  }, 60_000);
});
