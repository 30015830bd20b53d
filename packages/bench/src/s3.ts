import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { DeleteObjectsCommand, GetObjectCommand, ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { load, save, type Tensor, tensorBytes } from "@dcpjs/core";
import { splitBySizeAndType } from "@dcpjs/core/testing";
import {
  createS3Client,
  DEFAULT_MAX_ATTEMPTS,
  type S3ClientConfig,
  S3StorageReader,
  S3StorageWriter,
  throttleState,
} from "@dcpjs/s3";
import { resolveTransferSettings } from "@dcpjs/s3/testing";
import pLimit from "p-limit";
import { startFaultProxy } from "../../../test/support/fault-proxy.js";
import { type Row, report, timed } from "./report.js";
import { BENCH_BUCKET, benchServer } from "./s3-server.js";
import { emptyLike, float32StateDict } from "./state.js";
import { pythonHas, runPython } from "./system.js";

const BOTO3_PEER = fileURLToPath(new URL("../peers/boto3_transfer.py", import.meta.url));

/** Parameters of the S3 benchmarks. */
export interface S3Params {
  readonly tensors: number;
  readonly tensorMib: number;
  readonly reps: number;
  /** Files per rank (objects), uploaded and read concurrently. */
  readonly threadCount: number;
  /** Multipart part size and ranged-GET size, MiB. */
  readonly partMib: number;
  /** Parts per upload in flight. */
  readonly queueSize: number;
  /** The SDK's flexible-checksum mode for requests and responses (raw and dcpjs alike). */
  readonly checksums: "WHEN_SUPPORTED" | "WHEN_REQUIRED";
}

/** Which tensors go into which object: the same split dcpjs's writer makes. */
function split(sd: Record<string, Tensor>, files: number): Tensor[][] {
  const items = Object.entries(sd).map(([fqn, t]) => ({
    index: { fqn, offset: t.shape.map(() => 0) },
    type: "tensor" as const,
    tensorData: {
      chunk: { offsets: t.shape.map(() => 0), sizes: [...t.shape] },
      properties: { dtype: t.dtype },
      size: [...t.shape],
    },
  }));
  return splitBySizeAndType(files, items).map((bucket) => bucket.map((i) => sd[i.index.fqn]!));
}

/** The SDK ceiling for a save: the same bytes as the same objects, lib-storage Upload, same settings. */
async function rawUpload(
  client: S3Client,
  prefix: string,
  groups: Tensor[][],
  config: S3ClientConfig,
): Promise<number> {
  const { partSize, queueSize } = resolveTransferSettings(config);
  return timed(() =>
    Promise.all(
      groups.map((tensors, n) => {
        async function* body() {
          for (const t of tensors) yield tensorBytes(t);
        }
        return new Upload({
          client,
          params: { Bucket: BENCH_BUCKET, Key: `${prefix}/raw_${n}.bin`, Body: Readable.from(body()) },
          partSize,
          queueSize,
        }).done();
      }),
    ),
  );
}

/** The SDK ceiling for a load: concurrent ranged GETs of `partSize` into preallocated buffers. */
async function rawDownload(
  client: S3Client,
  keys: { key: string; size: number }[],
  partSize: number,
  concurrency: number,
): Promise<number> {
  const limit = pLimit(concurrency);
  const targets = keys.map((k) => new Uint8Array(k.size));
  return timed(() =>
    Promise.all(
      keys.flatMap((k, i) => {
        const ranges: Promise<void>[] = [];
        for (let at = 0; at < k.size; at += partSize) {
          const end = Math.min(at + partSize, k.size);
          ranges.push(
            limit(async () => {
              const r = await client.send(
                new GetObjectCommand({ Bucket: BENCH_BUCKET, Key: k.key, Range: `bytes=${at}-${end - 1}` }),
              );
              let pos = at;
              for await (const piece of r.Body as AsyncIterable<Uint8Array>) {
                targets[i]!.set(piece, pos);
                pos += piece.byteLength;
              }
              if (pos !== end) throw new Error(`short range ${k.key} ${at}-${end}: ${pos}`);
            }),
          );
        }
        return ranges;
      }),
    ),
  );
}

/**
 * Deletes every object under a prefix of the bench bucket (the loopback server keeps objects in RAM).
 * @param client - the client.
 * @param prefix - the key prefix, without the trailing slash.
 */
export async function deletePrefix(client: S3Client, prefix: string): Promise<void> {
  for (;;) {
    const page = await client.send(new ListObjectsV2Command({ Bucket: BENCH_BUCKET, Prefix: `${prefix}/` }));
    const keys = (page.Contents ?? []).map((o) => ({ Key: o.Key! }));
    if (keys.length === 0) return;
    await client.send(new DeleteObjectsCommand({ Bucket: BENCH_BUCKET, Delete: { Objects: keys } }));
  }
}

async function benchS3(mode: "save" | "load", p: S3Params): Promise<void> {
  const server = await benchServer();
  try {
    const { stateDict, bytes } = float32StateDict(p.tensors, p.tensorMib);
    const clientConfig: S3ClientConfig = {
      ...server.config,
      partSize: p.partMib << 20,
      queueSize: p.queueSize,
      maxConcurrency: Math.max(16, p.threadCount * p.queueSize),
    };
    const client = createS3Client(clientConfig);
    const groups = split(stateDict, p.threadCount);
    const boto3 = await pythonHas("boto3");
    const prefix = `bench-${Date.now()}`;
    const uri = `s3://${BENCH_BUCKET}/${prefix}/dcpjs`;
    const best = { raw: Infinity, ours: Infinity, boto3: Infinity };
    const objectMib = Math.round((p.tensors * p.tensorMib) / p.threadCount);
    const boto3Run = async (m: "upload" | "download") =>
      (
        await runPython<{ seconds: number }>(
          BOTO3_PEER,
          [
            m,
            BENCH_BUCKET,
            `${prefix}/boto3`,
            String(p.threadCount),
            String(objectMib),
            String(p.partMib),
            String(p.queueSize * p.threadCount),
          ],
          server.env,
        )
      ).seconds;
    if (mode === "save") {
      for (let rep = 0; rep < p.reps; rep++) {
        best.raw = Math.min(best.raw, await rawUpload(client, `${prefix}/raw`, groups, clientConfig));
        await deletePrefix(client, prefix);
        best.ours = Math.min(
          best.ours,
          await timed(() =>
            save(stateDict, {
              storageWriter: new S3StorageWriter({
                path: uri,
                client,
                clientConfig,
                threadCount: p.threadCount,
              }),
            }),
          ),
        );
        await deletePrefix(client, prefix);
        if (boto3) best.boto3 = Math.min(best.boto3, await boto3Run("upload"));
        await deletePrefix(client, prefix);
      }
    } else {
      await save(stateDict, {
        storageWriter: new S3StorageWriter({ path: uri, client, clientConfig, threadCount: p.threadCount }),
      });
      await rawUpload(client, `${prefix}/raw`, groups, clientConfig);
      if (boto3) await boto3Run("upload");
      const target = emptyLike(stateDict);
      const keys = groups.map((g, n) => ({
        key: `${prefix}/raw/raw_${n}.bin`,
        size: g.reduce((s, t) => s + t.data.byteLength, 0),
      }));
      for (let rep = 0; rep < p.reps; rep++) {
        best.raw = Math.min(
          best.raw,
          await rawDownload(client, keys, p.partMib << 20, clientConfig.maxConcurrency!),
        );
        best.ours = Math.min(
          best.ours,
          await timed(() =>
            load(target, {
              storageReader: new S3StorageReader({ path: uri, client, threadCount: p.threadCount }),
            }),
          ),
        );
        if (boto3) best.boto3 = Math.min(best.boto3, await boto3Run("download"));
      }
      const ok = Object.entries(stateDict).every(([k, t]) =>
        Buffer.from(tensorBytes(t)).equals(tensorBytes(target[k] as Tensor)),
      );
      await deletePrefix(client, prefix);
      if (!ok) throw new Error("loaded tensors differ from the saved ones");
    }
    const rows: Row[] = [
      {
        name: `raw SDK ceiling (${mode === "save" ? "lib-storage Upload" : "ranged GETs"})`,
        bytes,
        seconds: best.raw,
      },
      { name: `dcpjs ${mode} (threadCount ${p.threadCount})`, bytes, seconds: best.ours },
      ...(boto3
        ? [
            {
              name: `boto3 TransferManager ${mode === "save" ? "upload" : "download"}`,
              bytes,
              seconds: best.boto3,
            },
          ]
        : []),
    ];
    report(
      `s3-${mode}`,
      { ...p, bytes, server: server.backend },
      rows,
      { "dcpjs / raw SDK": best.raw / best.ours, "dcpjs / boto3": boto3 ? best.boto3 / best.ours : null },
      [
        `server: ${server.backend} on loopback, sharing the machine's 2 cores with the client`,
        ...(boto3 ? [] : ["boto3 column skipped: Debian's python3-boto3 is not installed"]),
      ],
    );
    client.destroy();
  } finally {
    await server.stop();
  }
}

/** `s3-save`: dcpjs's save through S3 vs the raw SDK (same objects, same settings) and boto3. */
export const s3Save = (p: S3Params) => benchS3("save", p);
/** `s3-load`: dcpjs's load from S3 vs concurrent ranged GETs and boto3. */
export const s3Load = (p: S3Params) => benchS3("load", p);

/** Parameters of the SlowDown benchmark. */
export interface S3ThrottleParams {
  readonly tensors: number;
  readonly tensorMib: number;
  /** Rounds per row (best of N). */
  readonly reps: number;
  /** Files (objects) per rank, uploaded and read concurrently. */
  readonly threadCount: number;
  /** Fractions of requests answered `503 SlowDown`, besides the clean round. */
  readonly rates: readonly number[];
  /** Also run every rate with `throttle: false` (the SDK's standard retry mode alone). */
  readonly baseline: boolean;
  /** Also run every rate with `throttle: false` and the SDK's `retryMode: "adaptive"` (its client-side rate limiter). */
  readonly adaptive: boolean;
}

/**
 * `s3-throttle`: one save+load round through the fault proxy, clean and with a share of requests
 * answered `503 SlowDown`, with dcpjs's throttling (AIMD per prefix, jittered backoff) and, as
 * the baseline, without it (`throttle: false`), and optionally with the SDK's adaptive retry mode
 * instead; reports each round's time over the clean one.
 */
export async function s3Throttle(p: S3ThrottleParams): Promise<void> {
  const server = await benchServer();
  const proxy = await startFaultProxy(server.config.endpoint!);
  try {
    const { stateDict, bytes } = float32StateDict(p.tensors, p.tensorMib);
    const rows: Row[] = [];
    const ratios: Record<string, number | null> = {};
    const modes: ("dcpjs" | "sdk" | "adaptive")[] = ["dcpjs"];
    if (p.baseline) modes.push("sdk");
    if (p.adaptive) modes.push("adaptive");
    for (const mode of modes) {
      let clean = Number.NaN;
      for (const rate of [0, ...p.rates]) {
        const config: S3ClientConfig = {
          ...server.config,
          endpoint: proxy.endpoint,
          ...(mode !== "dcpjs" ? { throttle: false } : {}),
        };
        let best = Number.POSITIVE_INFINITY;
        let worst = 0;
        let outcome = "ok";
        let lowest = "";
        const requests0 = proxy.stats.requests;
        const faults0 = proxy.stats.faults["503"] ?? 0;
        for (let rep = 0; rep < p.reps; rep++) {
          const client =
            mode === "adaptive"
              ? new S3Client({
                  region: config.region!,
                  endpoint: proxy.endpoint,
                  forcePathStyle: true,
                  credentials: config.credentials!,
                  maxAttempts: DEFAULT_MAX_ATTEMPTS,
                  retryMode: "adaptive",
                })
              : createS3Client(config);
          const prefix = `throttle-${Date.now()}-${rep}`;
          const uri = `s3://${BENCH_BUCKET}/${prefix}/dcpjs`;
          const target = emptyLike(stateDict);
          proxy.setFault(() => (Math.random() < rate ? "503" : undefined));
          const t0 = performance.now();
          try {
            await save(stateDict, {
              storageWriter: new S3StorageWriter({ path: uri, client, threadCount: p.threadCount }),
            });
            await load(target, {
              storageReader: new S3StorageReader({ path: uri, client, threadCount: p.threadCount }),
            });
            const seconds = (performance.now() - t0) / 1000;
            best = Math.min(best, seconds);
            worst = Math.max(worst, seconds);
            const ok = Object.entries(stateDict).every(([k, t]) =>
              Buffer.from(tensorBytes(t)).equals(tensorBytes(target[k] as Tensor)),
            );
            if (!ok) throw new Error("loaded tensors differ from the saved ones");
          } catch (error) {
            const e = error as { code?: string; failures?: { code?: string }[] };
            const seconds = ((performance.now() - t0) / 1000).toFixed(1);
            outcome = `${e.failures?.[0]?.code ?? e.code ?? String(error)} after ${seconds} s`;
          } finally {
            proxy.setFault(() => undefined);
          }
          const limiters = [...throttleState(client).values()];
          if (limiters.length > 0) lowest = String(Math.min(...limiters.map((l) => l.lowest)));
          await deletePrefix(client, prefix);
          client.destroy();
        }
        if (rate === 0) clean = best;
        const label = {
          dcpjs: "dcpjs throttling",
          sdk: "SDK standard retry (throttle: false)",
          adaptive: 'SDK retryMode "adaptive"',
        }[mode];
        const name = `${label} at ${rate * 100} % SlowDown`;
        rows.push({
          name,
          bytes,
          seconds: best,
          extra: {
            "× clean": (best / clean).toFixed(2),
            "worst s": worst.toFixed(2),
            requests: String(proxy.stats.requests - requests0),
            "503s": String((proxy.stats.faults["503"] ?? 0) - faults0),
            "lowest limit": lowest,
            outcome,
          },
        });
        if (rate > 0)
          ratios[`${mode} ${rate * 100} % / clean (lower is better)`] = Number.isFinite(best)
            ? best / clean
            : null;
      }
    }
    report("s3-throttle", { ...p, rates: p.rates.join(","), bytes, server: server.backend }, rows, ratios, [
      "one round = save + load of the same state dict through the fault proxy (503 answered at once, the request body drained)",
      "rows are the best of the reps that succeeded (worst s: the slowest that succeeded); outcome names the last failure",
    ]);
  } finally {
    await proxy.close();
    await server.stop();
  }
}
