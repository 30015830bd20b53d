import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdir, readFile, stat } from "node:fs/promises";
import { Agent, get } from "node:http";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { isTensor, loadStateDictFromKeys, type StateDict, tensorBytes } from "@dcpjs/core";
import { HttpStorageReader } from "@dcpjs/http";
import pLimit from "p-limit";
import { peakConcurrency, readAccessLog, startNginx } from "../../../test/support/nginx-server.js";
import { type Row, report, timed } from "./report.js";
import { runPython, torchVenvPython } from "./system.js";

const run = promisify(execFile);
const FIXTURES = fileURLToPath(new URL("../../../test/support/python/http_fixtures.py", import.meta.url));
const MiB = 1024 * 1024;

/** Parameters of the http-load benchmark. */
export interface HttpLoadParams {
  /** MiB of safetensors shards. */
  readonly sizeMib: number;
  /** Shard files. */
  readonly shards: number;
  /** Tensors (spread evenly over the shards). */
  readonly tensors: number;
  /** Connections in flight, for dcpjs (`maxConnections`) and for the baselines alike. */
  readonly connections: number;
  /** Ranged-GET size of the fetch and curl baselines, MiB. */
  readonly rangeMib: number;
  readonly reps: number;
  /** Scratch folder: the generated repository is kept there between runs. */
  readonly dir: string;
}

interface Shard {
  readonly name: string;
  readonly size: number;
}

/** Writes (once per size) a Hub-like sharded safetensors repository with the Python peer. */
async function ensureRepo(p: HttpLoadParams, repoDir: string): Promise<Shard[]> {
  const index = join(repoDir, "model.safetensors.index.json");
  const have = await stat(index).then(
    () => true,
    () => false,
  );
  if (!have) {
    const python = await torchVenvPython();
    if (!python)
      throw new Error("Expected the torch 2.13 venv (test/support/python/ensure-torch-venv.sh), got none");
    const perTensor = Math.floor((p.sizeMib * MiB) / p.tensors);
    console.error(`[http-load] writing ${p.sizeMib} MiB of safetensors shards into ${repoDir}`);
    await runPython(
      FIXTURES,
      ["hub-repo", repoDir, String(p.shards), String(p.tensors), String(perTensor)],
      {},
      python,
    );
  }
  const map = JSON.parse(await readFile(index, "utf8")) as { weight_map: Record<string, string> };
  const names = [...new Set(Object.values(map.weight_map))].sort();
  return Promise.all(names.map(async (name) => ({ name, size: (await stat(join(repoDir, name))).size })));
}

/**
 * Every shard into a buffer of its size allocated inside the timed span (as dcpjs allocates its
 * tensors), by ranged GETs of `rangeBytes`, `connections` in flight: `get` fetches `[at, end)` of
 * a shard and copies each body chunk into `target` at its position, returning the bytes it got.
 */
function rangedAll(
  shards: readonly Shard[],
  connections: number,
  rangeBytes: number,
  get: (shard: Shard, at: number, end: number, target: Uint8Array) => Promise<number>,
) {
  const limit = pLimit(connections);
  return timed(() => {
    const targets = shards.map((s) => new Uint8Array(s.size));
    const parts: Promise<void>[] = [];
    shards.forEach((s, i) => {
      for (let at = 0; at < s.size; at += rangeBytes) {
        const end = Math.min(at + rangeBytes, s.size);
        parts.push(
          limit(async () => {
            const got = await get(s, at, end, targets[i]!);
            if (got !== end - at)
              throw new Error(`Expected ${end - at} bytes of ${s.name} @${at}, got ${got}`);
          }),
        );
      }
    });
    return Promise.all(parts);
  });
}

/** The baseline: Node's fetch (see {@link rangedAll}). */
function fetchAll(base: string, shards: readonly Shard[], connections: number, rangeBytes: number) {
  return rangedAll(shards, connections, rangeBytes, async (s, at, end, target) => {
    const res = await fetch(`${base}/${s.name}`, { headers: { range: `bytes=${at}-${end - 1}` } });
    if (res.status !== 206) throw new Error(`Expected 206 for ${s.name} ${at}-${end}, got ${res.status}`);
    let pos = at;
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      target.set(chunk, pos);
      pos += chunk.byteLength;
    }
    return pos - at;
  });
}

/** The baseline with Node's own HTTP client (node:http, a keep-alive agent of `connections` sockets; see {@link rangedAll}). */
async function nodeHttpAll(base: string, shards: readonly Shard[], connections: number, rangeBytes: number) {
  const agent = new Agent({ keepAlive: true, maxSockets: connections });
  try {
    return await rangedAll(
      shards,
      connections,
      rangeBytes,
      (s, at, end, target) =>
        new Promise<number>((resolve, reject) => {
          const req = get(
            `${base}/${s.name}`,
            { agent, headers: { range: `bytes=${at}-${end - 1}` } },
            (res) => {
              let pos = at;
              res.on("data", (chunk: Buffer) => {
                target.set(chunk, pos);
                pos += chunk.byteLength;
              });
              res.on("end", () => resolve(pos - at));
              res.on("error", reject);
            },
          );
          req.on("error", reject);
        }),
    );
  } finally {
    agent.destroy();
  }
}

/** The other baseline: one `curl --parallel --parallel-max N` of the same ranges to /dev/null (no copy into memory). */
async function curlAll(base: string, shards: readonly Shard[], connections: number, rangeBytes: number) {
  const args = ["-sS", "--fail", "--parallel", "--parallel-max", String(connections)];
  let first = true;
  for (const s of shards) {
    for (let at = 0; at < s.size; at += rangeBytes) {
      if (!first) args.push("--next");
      first = false;
      args.push(
        "-r",
        `${at}-${Math.min(at + rangeBytes, s.size) - 1}`,
        "-o",
        "/dev/null",
        `${base}/${s.name}`,
      );
    }
  }
  return timed(() => run("curl", args, { maxBuffer: 16 << 20 }));
}

/**
 * CPU seconds this process's main thread has used (user + system; Linux's `/proc/thread-self/stat`,
 * in USER_HZ ticks of 10 ms), or undefined where there is no such file.
 */
function mainThreadCpu(): number | undefined {
  try {
    const fields = readFileSync("/proc/thread-self/stat", "utf8").split(") ")[1]!.split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}

/** The CPU seconds one side used: its main thread's, and the whole process's (its worker threads, GC helpers included). */
interface CpuSpent {
  readonly main: number | undefined;
  readonly process: number;
}

/** Runs `fn`, returning its result and the CPU it spent (see {@link CpuSpent}). */
async function withCpu<T>(fn: () => Promise<T>): Promise<[T, CpuSpent]> {
  const main0 = mainThreadCpu();
  const all0 = process.cpuUsage();
  const result = await fn();
  const all = process.cpuUsage(all0);
  const main1 = mainThreadCpu();
  return [
    result,
    {
      main: main0 === undefined || main1 === undefined ? undefined : main1 - main0,
      process: (all.user + all.system) / 1e6,
    },
  ];
}

/** The median of some numbers (undefined for none). */
function median(values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Bytes of the tensors of a state dict. */
function bytesOf(sd: StateDict): number {
  let n = 0;
  for (const v of Object.values(sd)) if (isTensor(v)) n += tensorBytes(v).byteLength;
  return n;
}

/**
 * `pnpm bench http-load`: a Hub-like sharded safetensors repository served by a loopback nginx;
 * dcpjs's HTTP load of every tensor against Node's fetch and curl downloading the same files with
 * as many connections, and a partial load of 10% of the tensors: bytes sent by nginx (its access
 * log) ÷ those tensors' bytes.
 *
 * @param p - see {@link HttpLoadParams}.
 */
export async function httpLoad(p: HttpLoadParams): Promise<void> {
  const root = join(p.dir, "http-load");
  const rel = `bench/sharded-${p.sizeMib}m-${p.shards}x${p.tensors}`;
  const repoDir = join(root, rel);
  await mkdir(repoDir, { recursive: true });
  const shards = await ensureRepo(p, repoDir);
  const total = shards.reduce((n, s) => n + s.size, 0);
  const nginx = await startNginx((line) => console.error(line), { root });
  try {
    const base = `${nginx.url}/${rel}`;
    const rangeBytes = p.rangeMib * MiB;
    const reader = () => new HttpStorageReader({ url: base, maxConnections: p.connections });
    const rows: Row[] = [];
    let tensorBytesLoaded = 0;
    const hasCurl = await run("curl", ["--version"]).then(
      () => true,
      () => false,
    );
    // The sides take turns in every repetition, so that a busy machine slows them alike.
    const best = { dcpjs: Infinity, fetch: Infinity, nodeHttp: Infinity, curl: Infinity };
    const peak = { dcpjs: 0, fetch: 0 };
    // CPU seconds per repetition of each in-process side: its main thread's, and the process's.
    const cpu = { dcpjs: [] as CpuSpent[], fetch: [] as CpuSpent[], nodeHttp: [] as CpuSpent[] };
    // A side's seconds, the CPU it spent (the access log read outside it) and nginx's peak in flight.
    const during = async (fn: () => Promise<number>) => {
      const before = (await readAccessLog(nginx.accessLogPath)).length;
      const [seconds, spent] = await withCpu(fn);
      const peak = peakConcurrency((await readAccessLog(nginx.accessLogPath)).slice(before));
      return { seconds, spent, peak };
    };
    for (let rep = 0; rep < p.reps; rep++) {
      const dcpjs = await during(() =>
        timed(async () => {
          const sd = (await loadStateDictFromKeys({
            checkpointId: base,
            storageReader: reader(),
          })) as StateDict;
          tensorBytesLoaded = bytesOf(sd);
        }),
      );
      cpu.dcpjs.push(dcpjs.spent);
      best.dcpjs = Math.min(best.dcpjs, dcpjs.seconds);
      peak.dcpjs = Math.max(peak.dcpjs, dcpjs.peak);
      const raw = await during(() => fetchAll(base, shards, p.connections, rangeBytes));
      cpu.fetch.push(raw.spent);
      best.fetch = Math.min(best.fetch, raw.seconds);
      peak.fetch = Math.max(peak.fetch, raw.peak);
      const [nodeHttp, nodeHttpCpu] = await withCpu(() =>
        nodeHttpAll(base, shards, p.connections, rangeBytes),
      );
      cpu.nodeHttp.push(nodeHttpCpu);
      best.nodeHttp = Math.min(best.nodeHttp, nodeHttp);
      if (hasCurl) best.curl = Math.min(best.curl, await curlAll(base, shards, p.connections, rangeBytes));
    }
    // Median CPU seconds per GiB of a side's repetitions (main thread; whole process).
    const cpuColumns = (spent: readonly CpuSpent[], bytes: number) => {
      const perGiB = (v: number | undefined) => (v === undefined ? "" : (v / (bytes / 1024 ** 3)).toFixed(2));
      const mains = spent.flatMap((c) => (c.main === undefined ? [] : [c.main]));
      return {
        "main CPU s/GiB": perGiB(median(mains)),
        "process CPU s/GiB": perGiB(median(spent.map((c) => c.process))),
      };
    };
    const [dcpjsSeconds, fetchSeconds, nodeHttpSeconds] = [best.dcpjs, best.fetch, best.nodeHttp];
    const curlSeconds = hasCurl ? best.curl : undefined;
    rows.push({
      name: "dcpjs load (every tensor)",
      bytes: tensorBytesLoaded,
      seconds: dcpjsSeconds,
      extra: { "peak in flight": peak.dcpjs, ...cpuColumns(cpu.dcpjs, tensorBytesLoaded) },
    });
    rows.push({
      name: `fetch, ${p.connections} ranged GETs in flight`,
      bytes: total,
      seconds: fetchSeconds,
      extra: { "peak in flight": peak.fetch, ...cpuColumns(cpu.fetch, total) },
    });
    rows.push({
      name: `node:http, ${p.connections} ranged GETs in flight`,
      bytes: total,
      seconds: nodeHttpSeconds,
      extra: cpuColumns(cpu.nodeHttp, total),
    });
    if (curlSeconds !== undefined)
      rows.push({
        name: `curl --parallel-max ${p.connections} (to /dev/null)`,
        bytes: total,
        seconds: curlSeconds,
      });

    // A partial load: every tenth tensor.
    const index = JSON.parse(await readFile(join(repoDir, "model.safetensors.index.json"), "utf8")) as {
      weight_map: Record<string, string>;
    };
    const keys = Object.keys(index.weight_map).filter((_, i) => i % 10 === 0);
    const logBefore = (await readAccessLog(nginx.accessLogPath)).length;
    let partialBytes = 0;
    const partialSeconds = await timed(async () => {
      const sd = (await loadStateDictFromKeys({
        checkpointId: base,
        storageReader: reader(),
        keys,
      })) as StateDict;
      partialBytes = bytesOf(sd);
    });
    const lines = (await readAccessLog(nginx.accessLogPath)).slice(logBefore);
    const sent = lines.reduce((n, l) => n + l.bytes, 0);
    rows.push({
      name: `dcpjs partial load (${keys.length} of ${Object.keys(index.weight_map).length} tensors)`,
      bytes: partialBytes,
      seconds: partialSeconds,
      extra: { requests: lines.length, "MB sent": (sent / 1e6).toFixed(1) },
    });

    const mb = (bytes: number, s: number) => bytes / s;
    report(
      "http-load",
      { ...p, bytes: total },
      rows,
      {
        "dcpjs / fetch throughput": mb(tensorBytesLoaded, dcpjsSeconds) / mb(total, fetchSeconds),
        "dcpjs / node:http throughput": mb(tensorBytesLoaded, dcpjsSeconds) / mb(total, nodeHttpSeconds),
        "dcpjs / curl throughput":
          curlSeconds === undefined ? null : mb(tensorBytesLoaded, dcpjsSeconds) / mb(total, curlSeconds),
        "partial: bytes sent / tensor bytes (lower is better)": sent / partialBytes,
      },
      [
        "throughputs count each side's payload: dcpjs the tensor bytes it loaded, the baselines the whole files (headers included)",
        `every in-memory side allocates where the bytes land inside its timed span (dcpjs its tensors, fetch and node:http a buffer per file) and copies each body chunk there once; the baselines ask for ${p.rangeMib} MiB ranges, dcpjs for the read scheduler's pieces (the HTTP backend's pieceBytes)`,
        "curl writes to /dev/null from its own process (no copy into a JS heap): the ceiling of nginx and loopback, not a like-for-like client",
        `nginx ${nginx.url} on loopback, ${p.connections} connections for every side; the page cache is warm after the first pass`,
        "peak in flight: the most requests nginx was answering at once (its access log's $msec and $request_time)",
        "main CPU s/GiB: the median over the repetitions of the CPU seconds (user + system) this process's main thread used, per GiB (Linux's /proc; blank elsewhere) — unlike main s/GiB (busy wall time), it does not grow when other processes take the cores; process CPU s/GiB: the same for the whole process, its worker threads included",
      ],
    );
  } finally {
    await nginx.stop();
  }
}
