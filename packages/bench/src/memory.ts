import { execFile } from "node:child_process";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import {
  emptyTensor,
  FileSystemReader,
  FileSystemWriter,
  load,
  save,
  type Tensor,
  tensorBytes,
} from "@dcpjs/core";
import { createS3Client, S3StorageWriter } from "@dcpjs/s3";
import { report } from "./report.js";
import { deletePrefix } from "./s3.js";
import { BENCH_BUCKET, benchServer } from "./s3-server.js";
import { float32StateDict } from "./state.js";

const run = promisify(execFile);
const SELF = fileURLToPath(import.meta.url);
const MiB = 1024 * 1024;

/** The convert row's tensors: 64 MiB each (the largest tensor, subtracted from its peak). */
const CONVERT_TENSOR_MIB = 64;

type Mode = "save" | "load" | "s3-save" | "export" | "make-torch" | "convert";

/** In a child process: allocate (and touch) the state dict, note RSS, save or load, report peak RSS beyond it. */
async function child(mode: Mode, dir: string, tensors: number, tensorMib: number): Promise<void> {
  const bytes = tensors * tensorMib * MiB;
  let sd: Record<string, Tensor>;
  if (mode === "make-torch") {
    // A torch-format checkpoint of `tensors` distinct entries that are views of one buffer, so
    // that making it holds one tensor's memory, not the checkpoint's.
    const shared = emptyTensor("float32", [(tensorMib * MiB) / 4]);
    (shared.data as Float32Array).forEach((_, i, a) => {
      a[i] = i % 4093;
    });
    const views: Record<string, Tensor> = {};
    for (let i = 0; i < tensors; i++) views[`layers.${i}.weight`] = shared;
    await save(views, { storageWriter: new FileSystemWriter({ path: dir, format: "torch" }) });
    return;
  }
  if (mode === "convert") {
    // The torch checkpoint made above, converted to safetensors with the default window.
    global.gc?.();
    const before = process.memoryUsage().rss;
    const parts = sampleMemory();
    const t0 = performance.now();
    const { convertCheckpoint } = await import("@dcpjs/core");
    await convertCheckpoint(dir, `${dir}-safetensors`, { to: "safetensors" });
    const seconds = (performance.now() - t0) / 1000;
    const peak = process.resourceUsage().maxRSS * 1024;
    console.log(JSON.stringify({ before, peak, seconds, bytes, ...parts() }));
    return;
  }
  if (mode === "export") {
    // The checkpoint saved by the "save" measurement, exported to safetensors: no state dict in memory.
    global.gc?.();
    const before = process.memoryUsage().rss;
    const parts = sampleMemory();
    const t0 = performance.now();
    const { exportSafetensors } = await import("@dcpjs/core");
    await exportSafetensors(dir, `${dir}-safetensors`, {});
    const seconds = (performance.now() - t0) / 1000;
    const peak = process.resourceUsage().maxRSS * 1024;
    console.log(JSON.stringify({ before, peak, seconds, bytes: tensors * tensorMib * MiB, ...parts() }));
    return;
  }
  if (mode === "s3-save") {
    // 100 KiB items between the large ones, so that parts straddle items (what lib-storage copies).
    sd = {};
    for (const [i, [k, t]] of Object.entries(float32StateDict(tensors, tensorMib).stateDict).entries()) {
      sd[k] = t;
      sd[`small${i}`] = emptyTensor("float32", [25_600]);
    }
  } else if (mode === "save") {
    sd = float32StateDict(tensors, tensorMib).stateDict;
  } else {
    const shape = [(tensorMib * MiB) / 4 / 1024, 1024];
    sd = Object.fromEntries(
      Array.from({ length: tensors }, (_, i) => [`w${i}`, emptyTensor("float32", shape)]),
    );
    for (const t of Object.values(sd)) tensorBytes(t).fill(1);
  }
  global.gc?.();
  const before = process.memoryUsage().rss;
  const parts = sampleMemory();
  const t0 = performance.now();
  if (mode === "save") await save(sd, { storageWriter: new FileSystemWriter({ path: dir }) });
  else if (mode === "load") await load(sd, { storageReader: new FileSystemReader({ path: dir }) });
  else {
    await save(sd, {
      storageWriter: new S3StorageWriter({
        path: dir,
        clientConfig: { requestChecksumCalculation: "WHEN_REQUIRED" },
      }),
    });
  }
  const seconds = (performance.now() - t0) / 1000;
  const peak = process.resourceUsage().maxRSS * 1024;
  console.log(JSON.stringify({ before, peak, seconds, bytes, ...parts() }));
}

/**
 * What the main thread's heap and its array buffers (`process.memoryUsage()`, every 10 ms) grew
 * by at most, from now until the returned function is called: what part of a peak RSS they
 * explain (the rest: worker threads' heaps, native buffers, the allocator's free lists).
 */
function sampleMemory(): () => { heapGrowth: number; arrayBuffersGrowth: number } {
  const start = process.memoryUsage();
  let heap = 0;
  let arrayBuffers = 0;
  const sample = () => {
    const m = process.memoryUsage();
    heap = Math.max(heap, m.heapTotal - start.heapTotal);
    arrayBuffers = Math.max(arrayBuffers, m.arrayBuffers - start.arrayBuffers);
  };
  const timer = setInterval(sample, 10);
  return () => {
    clearInterval(timer);
    sample();
    return { heapGrowth: heap, arrayBuffersGrowth: arrayBuffers };
  };
}

/**
 * `memory`: peak RSS beyond the state dict itself while saving and loading `tensors × tensorMib`
 * (each measured in a fresh process: RSS after allocating and touching the state dict, then the
 * process's peak RSS).
 */
export async function memory(
  tensors: number,
  tensorMib: number,
  dir: string,
  withS3: boolean,
  convertGib = 4,
): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const ckpt = join(dir, "ckpt");
  const measure = async (
    mode: Mode,
    target = ckpt,
    env: Record<string, string> = {},
    [n, mib] = [tensors, tensorMib],
  ) => {
    const { stdout } = await run(
      process.execPath,
      [...process.execArgv, "--expose-gc", SELF, "child", mode, target, String(n), String(mib)],
      { maxBuffer: 1 << 20, env: { ...process.env, ...env } },
    );
    return JSON.parse(stdout.trim().split("\n").at(-1)!) as {
      before: number;
      peak: number;
      seconds: number;
      bytes: number;
      heapGrowth?: number;
      arrayBuffersGrowth?: number;
    };
  };
  const s = await measure("save");
  const l = await measure("load");
  const x = await measure("export");
  // A torch checkpoint of convertGib GiB in 64 MiB tensors → safetensors (made first, not measured).
  const torchCkpt = join(dir, "torch-ckpt");
  const convertShape: [number, number] = [(convertGib * 1024) / CONVERT_TENSOR_MIB, CONVERT_TENSOR_MIB];
  await rm(ckpt, { recursive: true, force: true });
  await rm(`${ckpt}-safetensors`, { recursive: true, force: true });
  await run(
    process.execPath,
    [...process.execArgv, SELF, "child", "make-torch", torchCkpt, ...convertShape.map(String)],
    { maxBuffer: 1 << 20 },
  );
  const c = await measure("convert", torchCkpt, {}, convertShape);
  const beyond = (m: typeof s) => (m.peak - m.before) / MiB;
  const s3 = withS3 ? await measureS3Save(measure) : undefined;
  const row = (name: string, m: typeof s) => ({
    name,
    bytes: m.bytes,
    seconds: m.seconds,
    extra: {
      "RSS before (MiB)": (m.before / MiB).toFixed(0),
      "peak (MiB)": (m.peak / MiB).toFixed(0),
      "beyond (MiB)": beyond(m).toFixed(0),
      "of it heap / arrayBuffers (MiB)": `${((m.heapGrowth ?? 0) / MiB).toFixed(0)} / ${((m.arrayBuffersGrowth ?? 0) / MiB).toFixed(0)}`,
    },
  });
  report(
    "memory",
    { tensors, tensorMib, bytes: s.bytes },
    [
      row("save", s),
      row("load", l),
      row("export to safetensors", x),
      row(`convert torch → safetensors (${convertShape[0]} × ${CONVERT_TENSOR_MIB} MiB)`, c),
      ...(s3 ? [row("S3 save (threadCount 1, 8 MiB parts × 4)", s3)] : []),
    ],
    {
      "save: peak RSS beyond the state dict, MiB (target ≤ 256)": beyond(s),
      "load: peak RSS beyond the state dict, MiB (target ≤ 256)": beyond(l),
      "export: peak RSS beyond the process, MiB (stated bound: max(largest tensor, 256 MiB) + metadata)":
        beyond(x),
      [`convert ${convertGib} GiB torch → safetensors: peak RSS beyond the process and the largest tensor (${CONVERT_TENSOR_MIB} MiB), MiB (target ≤ 512; window 256 MiB)`]:
        beyond(c) - CONVERT_TENSOR_MIB,
      ...(s3
        ? {
            "S3 save: peak RSS beyond the state dict, MiB (stated bound: live parts (2×4+5)×8 = 104, + ≈ 100 for sent parts not yet collected and the heaps; was 653)":
              beyond(s3),
          }
        : {}),
    },
    ["the page cache is not part of RSS"],
  );
  await rm(dir, { recursive: true, force: true });
}

/** The S3 save measurement against the bench's S3 server (objects deleted afterwards). */
async function measureS3Save(
  measure: (
    mode: "s3-save",
    target: string,
    env: Record<string, string>,
  ) => Promise<{
    before: number;
    peak: number;
    seconds: number;
    bytes: number;
  }>,
) {
  const server = await benchServer();
  const prefix = `memory-${Date.now()}`;
  try {
    return await measure("s3-save", `s3://${BENCH_BUCKET}/${prefix}`, server.env);
  } finally {
    const client = createS3Client(server.config);
    await deletePrefix(client, prefix).catch(() => {});
    client.destroy();
    await server.stop();
  }
}

if (process.argv[2] === "child") {
  await child(process.argv[3] as Mode, process.argv[4]!, Number(process.argv[5]), Number(process.argv[6]));
}
