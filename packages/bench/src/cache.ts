import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { emptyTensor, load, save, type Tensor } from "@dcpjs/core";
import { createS3Client, S3StorageReader, S3StorageWriter } from "@dcpjs/s3";
import { report } from "./report.js";
import { deletePrefix } from "./s3.js";
import { BENCH_BUCKET, benchServer } from "./s3-server.js";
import { float32StateDict } from "./state.js";

const run = promisify(execFile);
const SELF = fileURLToPath(import.meta.url);

/** What one loading process reports. */
interface ChildReport {
  gets: number;
  heads: number;
  bytes: number;
  seconds: number;
}

/** In a child process: load every tensor of the checkpoint (a replicated load), counting requests. */
async function child(uri: string, cacheDir: string, tensors: number, tensorMib: number): Promise<void> {
  const client = createS3Client();
  const counts = { gets: 0, heads: 0, bytes: 0 };
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const result = await next(args);
      if (context.commandName === "GetObjectCommand") {
        counts.gets++;
        counts.bytes += (result.output as { ContentLength?: number }).ContentLength ?? 0;
      } else if (context.commandName === "HeadObjectCommand") counts.heads++;
      return result;
    },
    { step: "initialize", name: "benchCacheCounter" },
  );
  const sd: Record<string, Tensor> = {};
  for (let i = 0; i < tensors; i++)
    sd[`w${i}`] = emptyTensor("float32", [(tensorMib * 1024 * 1024) / 4 / 1024, 1024]);
  const t0 = performance.now();
  const reader = new S3StorageReader({ path: uri, client, ...(cacheDir !== "-" ? { cacheDir } : {}) });
  await load(sd, { storageReader: reader });
  await reader.readCache?.settled();
  const seconds = (performance.now() - t0) / 1000;
  process.stdout.write(`${JSON.stringify({ ...counts, seconds })}\n`);
}

/**
 * `s3-cache`: `procs` processes on this machine each load the whole checkpoint (every tensor
 * replicated, as data-parallel ranks do) from the S3 server — without a cache, with a cold shared
 * read cache, and again with the warm cache — and the requests and bytes S3 served are counted in
 * each process.
 */
export async function s3Cache(procs: number, tensors: number, tensorMib: number): Promise<void> {
  const server = await benchServer();
  const prefix = `cache-${Date.now()}`;
  const uri = `s3://${BENCH_BUCKET}/${prefix}`;
  const cacheDir = await mkdtemp(join(tmpdir(), "dcpjs-bench-cache-"));
  const client = createS3Client(server.config);
  try {
    const { stateDict, bytes } = float32StateDict(tensors, tensorMib);
    await save(stateDict, {
      storageWriter: new S3StorageWriter({ path: uri, clientConfig: server.config, threadCount: 4 }),
    });
    const round = async (dir: string) => {
      const t0 = performance.now();
      const reports = await Promise.all(
        Array.from({ length: procs }, async () => {
          const { stdout } = await run(
            process.execPath,
            [...process.execArgv, SELF, "child", uri, dir, String(tensors), String(tensorMib)],
            { maxBuffer: 1 << 20, env: { ...process.env, ...server.env } },
          );
          return JSON.parse(stdout.trim().split("\n").at(-1)!) as ChildReport;
        }),
      );
      const sum = (k: keyof ChildReport) => reports.reduce((n, r) => n + r[k], 0);
      return {
        seconds: (performance.now() - t0) / 1000,
        gets: sum("gets"),
        heads: sum("heads"),
        s3Bytes: sum("bytes"),
      };
    };
    const none = await round("-");
    const cold = await round(cacheDir);
    const warm = await round(cacheDir);
    const row = (name: string, r: typeof none) => ({
      name,
      bytes: procs * bytes,
      seconds: r.seconds,
      extra: { GETs: r.gets, HEADs: r.heads, "MB from S3": (r.s3Bytes / 1e6).toFixed(1) },
    });
    report(
      "s3-cache",
      { procs, tensors, tensorMib, checkpointBytes: bytes, backend: server.backend },
      [
        row(`${procs} processes, no cache`, none),
        row(`${procs} processes, one cold cache`, cold),
        row(`${procs} processes, warm cache`, warm),
      ],
      {
        "cold cache: bytes from S3 ÷ without cache (ideal 1/procs)": cold.s3Bytes / none.s3Bytes,
        "cold cache: bytes from S3 ÷ checkpoint bytes (ideal 1)": cold.s3Bytes / bytes,
        "warm cache: GETs": warm.gets,
        "cold cache: wall time ÷ without cache": cold.seconds / none.seconds,
        "warm cache: wall time ÷ without cache": warm.seconds / none.seconds,
      },
      [
        "MB/s is the bytes the processes loaded together (procs × checkpoint) over the round's wall time.",
        "Bound: the loopback server and this machine's cores (the processes, the server and the cache share them).",
      ],
    );
  } finally {
    await deletePrefix(client, prefix).catch(() => {});
    client.destroy();
    await rm(cacheDir, { recursive: true, force: true });
    await server.stop();
  }
}

if (process.argv[2] === "child") {
  await child(process.argv[3]!, process.argv[4]!, Number(process.argv[5]), Number(process.argv[6]));
}
