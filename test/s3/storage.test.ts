import { ListMultipartUploadsCommand } from "@aws-sdk/client-s3";
import {
  CheckpointException,
  DefaultLoadPlanner,
  emptyTensor,
  load,
  type ProcessGroup,
  save,
  shardTensor,
  type Tensor,
} from "@dcpjs/core";
import type { FileReadStream } from "@dcpjs/core/extend";
import {
  BinaryPrefixStrategy,
  createS3Client,
  parseS3Uri,
  type ReaderConstructor,
  RoundRobinPrefixStrategy,
  S3ReaderConstructor,
  S3StorageReader,
  S3StorageWriter,
} from "@dcpjs/s3";
import { describe, expect, it } from "vitest";
import { allRanks, runRanks } from "../support/ranks.js";
import { freshUri, listKeys, recordRequests, s3Server, testClient } from "../support/s3.js";
import { randomTensor, sameTensor } from "../support/tensors.js";

const MiB = 1024 * 1024;
const big = randomTensor("float32", [10, MiB], 1); // 40 MiB, replicated: one rank uploads it in parts
const rows = randomTensor("bfloat16", [300, 1000], 2);
const stateDictOf = (pg: ProcessGroup) => ({
  big,
  rows: shardTensor(rows, { rank: pg.rank, worldSize: pg.size }),
  small: randomTensor("int64", [17], 3),
  config: { lr: 0.001, name: "s3" },
});
const emptyLike = () => ({
  big: emptyTensor("float32", [10, MiB]),
  rows: emptyTensor("bfloat16", [300, 1000]),
  small: emptyTensor("int64", [17]),
  config: { lr: 0, name: "" },
});

const readers: [string, () => ReaderConstructor][] = [
  ["sequential", () => S3ReaderConstructor.sequential()],
  ["rangeBased", () => S3ReaderConstructor.rangeBased()],
  ["dcpOptimized", () => S3ReaderConstructor.dcpOptimized()],
];

describe("S3StorageWriter / S3StorageReader on a real S3 server", () => {
  it.each([1, 4])(
    "3 ranks with threadCount %i write world × threadCount + 1 objects, and every reader loads them",
    async (threadCount) => {
      const client = testClient();
      const uri = freshUri();
      await allRanks(3, (pg) =>
        save(stateDictOf(pg), {
          storageWriter: new S3StorageWriter({ path: uri, client, threadCount }),
          processGroup: pg,
        }),
      );
      const keys = await listKeys(client, uri);
      expect(keys).toHaveLength(3 * threadCount + 1);
      expect(keys).toContain(".metadata");
      for (const [name, make] of readers) {
        const loaded = await allRanks(2, async (pg) => {
          const sd = emptyLike();
          await load(sd, {
            storageReader: new S3StorageReader({ path: uri, client, readerConstructor: make() }),
            processGroup: pg,
          });
          return sd;
        });
        for (const sd of loaded) {
          expect(sameTensor(sd.big, big), name).toBe(true);
          expect(sameTensor(sd.rows, rows), name).toBe(true);
          expect(sameTensor(sd.small, randomTensor("int64", [17], 3)), name).toBe(true);
          expect(sd.config, name).toEqual({ lr: 0.001, name: "s3" });
        }
      }
    },
  );

  it("guards against overwriting: save, overwrite=true save, overwrite=false → Checkpoint already exists", async () => {
    const client = testClient();
    const uri = freshUri();
    const sd = { w: randomTensor("float32", [8]), step: 1 };
    await save(sd, { storageWriter: new S3StorageWriter({ path: uri, client }) });
    await save(
      { ...sd, step: 2 },
      { storageWriter: new S3StorageWriter({ path: uri, client, overwrite: true }) },
    );
    const e = await save(
      { ...sd, step: 3 },
      { storageWriter: new S3StorageWriter({ path: uri, client, overwrite: false }) },
    ).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(CheckpointException);
    expect((e as CheckpointException).failures[0]!.message).toMatch(/^Checkpoint already exists/);
    const target = { w: emptyTensor("float32", [8]), step: 0 };
    await load(target, { storageReader: new S3StorageReader({ path: uri, client }) });
    expect(target.step).toBe(2);
  });

  it("lays out RoundRobin(prefix1..3) over 3 ranks and Binary(epoch 4, length 4, count 4) over 4 ranks", async () => {
    const client = testClient();
    const rr = freshUri();
    await allRanks(3, (pg) =>
      save(stateDictOf(pg), {
        storageWriter: new S3StorageWriter({
          path: rr,
          client,
          prefixStrategy: new RoundRobinPrefixStrategy(["prefix1", "prefix2", "prefix3"]),
        }),
        processGroup: pg,
      }),
    );
    expect((await listKeys(client, rr)).map((k) => k.replace(/\.[0-9a-f]{12}\.distcp$/, ".distcp"))).toEqual([
      ".metadata",
      "prefix1/__0_0.distcp",
      "prefix2/__1_0.distcp",
      "prefix3/__2_0.distcp",
    ]);

    const bin = freshUri();
    const strategy = new BinaryPrefixStrategy({ epochNum: 4, minPrefixLength: 4, prefixCount: 4 });
    await allRanks(4, (pg) =>
      save(
        { x: shardTensor(randomTensor("int32", [8]), { rank: pg.rank, worldSize: pg.size }) },
        {
          storageWriter: new S3StorageWriter({ path: bin, client, prefixStrategy: strategy }),
          processGroup: pg,
        },
      ),
    );
    const keys = await listKeys(client, bin);
    expect(
      new Set(keys.filter((k) => k !== ".metadata").map((k) => k.split("/").slice(0, 2).join("/"))),
    ).toEqual(new Set(["0000/epoch_4", "1000/epoch_4", "0100/epoch_4", "1100/epoch_4"]));
    const sd = { x: emptyTensor("int32", [8]) as Tensor };
    await load(sd, { storageReader: new S3StorageReader({ path: bin, client }) });
    expect(sameTensor(sd.x, randomTensor("int32", [8]))).toBe(true);
  });

  it("reads each file at ascending positions", async () => {
    const client = testClient();
    const uri = freshUri();
    const tensors = Object.fromEntries(
      Array.from({ length: 12 }, (_, i) => [`t${i}`, randomTensor("float32", [6, 50], i + 1)]),
    );
    await allRanks(2, (pg) =>
      save(
        Object.fromEntries(
          Object.entries(tensors).map(([k, t]) => [
            k,
            shardTensor(t, { dim: 0, rank: pg.rank, worldSize: pg.size }),
          ]),
        ),
        { storageWriter: new S3StorageWriter({ path: uri, client, threadCount: 2 }), processGroup: pg },
      ),
    );
    const positions: [uri: string, offsets: number[]][] = [];
    const inner = S3ReaderConstructor.dcpOptimized();
    const recording: ReaderConstructor = {
      type: inner.type,
      capabilities: inner.capabilities!,
      create(target, ranges) {
        const reader = inner.create(target, ranges);
        const list: number[] = [];
        positions.push([target.uri, list]);
        return {
          ...reader,
          read: (offset, length, signal) => {
            list.push(offset);
            return reader.read(offset, length, signal);
          },
          size: (signal) => reader.size(signal),
          close: () => reader.close(),
        } satisfies FileReadStream;
      },
    };
    const loaded = await allRanks(3, async (pg) => {
      const sd = Object.fromEntries(
        Object.keys(tensors).map((k) => [
          k,
          shardTensor(emptyTensor("float32", [6, 50]), { dim: 1, rank: pg.rank, worldSize: pg.size }),
        ]),
      );
      await load(sd, {
        storageReader: new S3StorageReader({ path: uri, client, readerConstructor: recording }),
        processGroup: pg,
      });
      return sd;
    });
    expect(loaded).toHaveLength(3);
    const dataFiles = positions.filter(([u]) => !u.endsWith(".metadata"));
    expect(dataFiles.length).toBeGreaterThan(0);
    for (const [, list] of dataFiles) expect(list).toEqual([...list].sort((a, b) => a - b));
  });

  it("dcpOptimized: a full load of a file is one GET with an unbounded gap", async () => {
    const uri = freshUri();
    const client = testClient();
    const sd = Object.fromEntries(
      Array.from({ length: 20 }, (_, i) => [`t${i}`, randomTensor("int16", [100 + i], i)]),
    );
    await save(sd, { storageWriter: new S3StorageWriter({ path: uri, client }) });
    const reading = testClient();
    const log = recordRequests(reading);
    const target = Object.fromEntries(Object.keys(sd).map((k, i) => [k, emptyTensor("int16", [100 + i])]));
    await load(target, {
      storageReader: new S3StorageReader({
        path: uri,
        client: reading,
        readerConstructor: S3ReaderConstructor.dcpOptimized({ maxGapSize: Number.POSITIVE_INFINITY }),
      }),
    });
    for (const [k, t] of Object.entries(sd)) expect(sameTensor(target[k]!, t)).toBe(true);
    const gets = log.filter((r) => r.command === "GetObjectCommand" && r.key?.endsWith(".distcp"));
    expect(gets).toHaveLength(1);
  });

  it("dcpOptimized: a large item is fetched as parallel 8 MiB ranged GETs, unless parallelThreshold is Infinity", async () => {
    const uri = freshUri();
    const client = testClient();
    const w = randomTensor("uint8", [20 * MiB], 5);
    await save({ w }, { storageWriter: new S3StorageWriter({ path: uri, client }) });
    for (const [threshold, gets] of [
      [undefined, 3],
      [Number.POSITIVE_INFINITY, 1],
    ] as const) {
      const reading = testClient();
      const log = recordRequests(reading);
      const target = { w: emptyTensor("uint8", [20 * MiB]) };
      const readerConstructor = S3ReaderConstructor.dcpOptimized(
        threshold ? { parallelThreshold: threshold } : {},
      );
      await load(target, {
        storageReader: new S3StorageReader({ path: uri, client: reading, readerConstructor }),
      });
      expect(sameTensor(target.w, w)).toBe(true);
      expect(log.filter((r) => r.command === "GetObjectCommand" && r.key?.endsWith(".distcp"))).toHaveLength(
        gets,
      );
    }
  });

  it("dcpOptimized: a weights-only partial load fetches only the weights' byte ranges", async () => {
    const uri = freshUri();
    const client = testClient();
    const layers = Array.from({ length: 6 }, (_, i) => ({
      w: randomTensor("float32", [64], i),
      m: randomTensor("float32", [256], 100 + i),
    }));
    const md = await save({ layers }, { storageWriter: new S3StorageWriter({ path: uri, client }) });
    const reading = testClient();
    const log = recordRequests(reading);
    const target = { layers: layers.map(() => ({ w: emptyTensor("float32", [64]) })) };
    await load(target, {
      storageReader: new S3StorageReader({
        path: uri,
        client: reading,
        readerConstructor: S3ReaderConstructor.dcpOptimized({ maxGapSize: 0 }),
      }),
      planner: new DefaultLoadPlanner({ allowPartialLoad: true }),
    });
    target.layers.forEach((l, i) => {
      expect(sameTensor(l.w, layers[i]!.w)).toBe(true);
    });
    const expected = [...md.storageData]
      .filter(([key]) => key.includes(".w\u0000"))
      .map(([, s]) => `bytes=${s.offset}-${s.offset + s.length - 1}`)
      .sort();
    const requested = log
      .filter((r) => r.command === "GetObjectCommand" && r.key?.endsWith(".distcp"))
      .map((r) => r.range!)
      .sort();
    expect(requested).toEqual(expected);
  });

  it("dcpOptimized: a rank of a finer row sharding fetches only the 1 MiB checksum blocks its rows lie in, bit-exact", async () => {
    // [4096, 1024] float32 saved by 2 ranks: two 8 MiB row chunks, 8 blocks each. Rank 1 of 3 needs
    // rows 1366–2731: bytes 5,595,136 on of chunk 0 (blocks 5–7) and up to 2,801,664 of chunk 1 (blocks 0–2).
    const uri = freshUri();
    const client = testClient();
    const w = randomTensor("float32", [4096, 1024], 9);
    const [md] = await allRanks(2, (pg) =>
      save(
        { w: shardTensor(w, { rank: pg.rank, worldSize: 2 }) },
        { storageWriter: new S3StorageWriter({ path: uri, client }), processGroup: pg },
      ),
    );
    const reading = testClient();
    const log = recordRequests(reading);
    const target = { w: shardTensor(emptyTensor("float32", [4096, 1024]), { rank: 1, worldSize: 3 }) };
    await load(target, {
      storageReader: new S3StorageReader({ path: uri, client: reading }),
    });
    expect(
      sameTensor(target.w.shards[0]!.tensor, shardTensor(w, { rank: 1, worldSize: 3 }).shards[0]!.tensor),
    ).toBe(true);
    const at = (rows: number) => md!.storageData.get(`w\u0000${rows},0`)!.offset;
    expect(
      log
        .filter((r) => r.command === "GetObjectCommand" && r.key?.endsWith(".distcp"))
        .map((r) => r.range)
        .sort(),
    ).toEqual(
      [
        `bytes=${at(0) + 5 * MiB}-${at(0) + 8 * MiB - 1}`,
        `bytes=${at(2048)}-${at(2048) + 3 * MiB - 1}`,
      ].sort(),
    );
  });

  it("an aborted save leaves no .metadata and no multipart upload behind", async () => {
    const uri = freshUri();
    const controller = new AbortController();
    const client = testClient();
    recordRequests(client, (r) => {
      if (r.command === "UploadPartCommand" && r.partNumber === 2)
        controller.abort(new Error("stop the save"));
    });
    const e = await save(
      { big },
      { storageWriter: new S3StorageWriter({ path: uri, client }), signal: controller.signal },
    ).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(CheckpointException);
    expect((e as CheckpointException).failures[0]!.code).toBe("ABORTED");
    expect(await listKeys(client, uri)).not.toContain(".metadata");
    const { bucket, key } = parseS3Uri(uri);
    const uploads = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: key }));
    expect(uploads.Uploads ?? []).toEqual([]);
  });
});

describe("routing and bad input", () => {
  it("save/load with checkpointId s3://… reach @dcpjs/s3 and use the standard variables", async () => {
    const s = s3Server();
    Object.assign(process.env, {
      S3_ENDPOINT: s.endpoint,
      AWS_ACCESS_KEY_ID: s.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s.secretAccessKey,
      AWS_REGION: s.region,
    });
    const uri = freshUri();
    const w = randomTensor("uint8", [33]);
    await save({ w, note: "routed" }, { checkpointId: uri });
    const sd = { w: emptyTensor("uint8", [33]), note: "" };
    await load(sd, { checkpointId: uri });
    expect(sameTensor(sd.w, w)).toBe(true);
    expect(sd.note).toBe("routed");
  });

  it("rejects s3:// URIs without a bucket and out-of-range part sizes, saying what was expected", () => {
    expect(() => new S3StorageWriter({ path: "s3://" })).toThrow(/^Bucket name must be non-empty/);
    expect(() => new S3StorageReader({ path: "s3:///key" })).toThrow(/^Bucket name must be non-empty/);
    expect(() => new S3StorageWriter({ path: "gs://b/x" })).toThrow(/^Only s3:\/\/ URIs are supported/);
    expect(() => new S3StorageWriter({ path: "s3://b/x", clientConfig: { partSize: 4 * MiB } })).toThrow(
      expect.objectContaining({
        code: "INVALID_ARGUMENT",
        message: expect.stringMatching(/Expected `partSize` to be an integer between 5242880 bytes/),
      }),
    );
  });

  it("reports wrong credentials as ACCESS_DENIED on every rank", async () => {
    const s = s3Server();
    const client = createS3Client({
      endpoint: s.endpoint,
      region: s.region,
      maxAttempts: 1,
      credentials: { accessKeyId: s.accessKeyId, secretAccessKey: "wrong-secret" },
    });
    const uri = freshUri();
    const settled = await runRanks(2, (pg) =>
      save({ x: 1 }, { storageWriter: new S3StorageWriter({ path: uri, client }), processGroup: pg }),
    );
    for (const r of settled) {
      const e = (r as PromiseRejectedResult).reason as CheckpointException;
      expect(e).toBeInstanceOf(CheckpointException);
      expect(e.failures.map((f) => f.code)).toEqual(["ACCESS_DENIED", "ACCESS_DENIED"]);
      expect(e.failures[0]!.message).toMatch(/S3 refused .* expected credentials/);
    }
  });
});
