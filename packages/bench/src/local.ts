import { mkdir, open, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { FileSystemReader, FileSystemWriter, load, save, type Tensor, tensorBytes } from "@dcpjs/core";
import { bestOf, type Row, report, timed } from "./report.js";
import { emptyLike, float32StateDict } from "./state.js";
import { dropCaches, pythonHas, runPython } from "./system.js";

const TORCH_PEER = fileURLToPath(new URL("../peers/torch_dcp.py", import.meta.url));

/** Parameters of the local benchmarks. */
export interface LocalParams {
  /** Tensors in the state dict. */
  readonly tensors: number;
  /** MiB per tensor. */
  readonly tensorMib: number;
  /** Repetitions (best of N). */
  readonly reps: number;
  /** Scratch folder. */
  readonly dir: string;
  /** dcpjs files per rank. */
  readonly threadCount: number;
}

/** The machine's limit for a save: the same bytes written to one file with positional writes, then fsync. */
async function rawWrite(path: string, tensors: readonly Tensor[]): Promise<number> {
  await rm(path, { force: true });
  return timed(async () => {
    const fh = await open(path, "w");
    let position = 0;
    for (const t of tensors) {
      const bytes = tensorBytes(t);
      let done = 0;
      while (done < bytes.byteLength)
        done += (await fh.write(bytes, done, bytes.byteLength - done, position + done)).bytesWritten;
      position += bytes.byteLength;
    }
    await fh.sync();
    await fh.close();
  });
}

/** The machine's limit for a load: the same bytes read from one file straight into preallocated tensors. */
async function rawRead(path: string, tensors: readonly Tensor[]): Promise<number> {
  return timed(async () => {
    const fh = await open(path, "r");
    let position = 0;
    for (const t of tensors) {
      const bytes = tensorBytes(t);
      let done = 0;
      while (done < bytes.byteLength)
        done += (await fh.read(bytes, done, bytes.byteLength - done, position + done)).bytesRead;
      position += bytes.byteLength;
    }
    await fh.close();
  });
}

async function torchAvailable(): Promise<boolean> {
  return pythonHas("torch");
}

/**
 * `local-save`: dcpjs's save of `tensors × tensorMib` float32 into a folder, against the raw
 * write+fsync of the same bytes and against PyTorch DCP 1.13's `FileSystemWriter` (one file per
 * rank), interleaved rep by rep.
 */
export async function localSave(p: LocalParams): Promise<void> {
  const { stateDict, bytes } = float32StateDict(p.tensors, p.tensorMib);
  const tensors = Object.values(stateDict);
  await mkdir(p.dir, { recursive: true });
  const torch = await torchAvailable();
  const times = {
    raw: Number.POSITIVE_INFINITY,
    ours: Number.POSITIVE_INFINITY,
    torch: Number.POSITIVE_INFINITY,
  };
  for (let rep = 0; rep < p.reps; rep++) {
    times.raw = Math.min(times.raw, await rawWrite(join(p.dir, "raw.bin"), tensors));
    await rm(join(p.dir, "raw.bin"), { force: true });
    const ckpt = join(p.dir, "dcpjs");
    await rm(ckpt, { recursive: true, force: true });
    times.ours = Math.min(
      times.ours,
      await timed(() =>
        save(stateDict, { storageWriter: new FileSystemWriter({ path: ckpt, threadCount: p.threadCount }) }),
      ),
    );
    await rm(ckpt, { recursive: true, force: true });
    if (torch) {
      const r = await runPython<{ seconds: number }>(TORCH_PEER, [
        "save",
        join(p.dir, "torch"),
        String(p.tensors),
        String(p.tensorMib),
      ]);
      times.torch = Math.min(times.torch, r.seconds);
      await rm(join(p.dir, "torch"), { recursive: true, force: true });
    }
  }
  const rows: Row[] = [
    { name: "raw node:fs write + fsync", bytes, seconds: times.raw },
    { name: `dcpjs save (threadCount ${p.threadCount})`, bytes, seconds: times.ours },
    ...(torch ? [{ name: "PyTorch DCP 1.13 save", bytes, seconds: times.torch }] : []),
  ];
  report(
    "local-save",
    { ...p, bytes },
    rows,
    { "dcpjs / raw": times.raw / times.ours, "dcpjs / PyTorch DCP": torch ? times.torch / times.ours : null },
    torch
      ? []
      : [
          "PyTorch DCP column skipped: Debian's python3-torch is not installed (apt-get install python3-torch)",
        ],
  );
}

/**
 * `local-load`: dcpjs's load of the same checkpoint into preallocated tensors, against raw reads of
 * the same bytes into preallocated tensors and PyTorch DCP 1.13's `FileSystemReader`, with a cold
 * page cache (dropped before every run) and a warm one.
 */
export async function localLoad(p: LocalParams): Promise<void> {
  const { stateDict, bytes } = float32StateDict(p.tensors, p.tensorMib);
  const tensors = Object.values(stateDict);
  await rm(p.dir, { recursive: true, force: true });
  await mkdir(p.dir, { recursive: true });
  const rawPath = join(p.dir, "raw.bin");
  const ckpt = join(p.dir, "dcpjs");
  const torchDir = join(p.dir, "torch");
  await rawWrite(rawPath, tensors);
  await save(stateDict, { storageWriter: new FileSystemWriter({ path: ckpt, threadCount: p.threadCount }) });
  const torch = await torchAvailable();
  if (torch) await runPython(TORCH_PEER, ["save", torchDir, String(p.tensors), String(p.tensorMib)]);
  const target = emptyLike(stateDict);
  const targetTensors = Object.values(target) as Tensor[];
  const files = [
    rawPath,
    ...(await readdir(ckpt)).map((f) => join(ckpt, f)),
    ...(torch ? (await readdir(torchDir)).map((f) => join(torchDir, f)) : []),
  ];
  const rows: Row[] = [];
  const ratios: Record<string, number | null> = {};
  let how = "";
  for (const cache of ["cold", "warm"] as const) {
    const prepare = async () => {
      if (cache === "cold") how = await dropCaches(files);
    };
    const raw = await bestOf(p.reps, async () => {
      await prepare();
      return rawRead(rawPath, targetTensors);
    });
    const ours = await bestOf(p.reps, async () => {
      await prepare();
      return timed(() => load(target, { storageReader: new FileSystemReader({ path: ckpt }) }));
    });
    let torchSeconds: number | null = null;
    if (torch) {
      torchSeconds = await bestOf(
        p.reps,
        async () =>
          (
            await runPython<{ seconds: number }>(TORCH_PEER, [
              "load",
              torchDir,
              String(p.tensors),
              String(p.tensorMib),
              cache === "cold" ? "cold" : "warm",
            ])
          ).seconds,
      );
    }
    rows.push(
      { name: `raw node:fs read (${cache})`, bytes, seconds: raw },
      { name: `dcpjs load (${cache})`, bytes, seconds: ours },
    );
    if (torchSeconds !== null)
      rows.push({ name: `PyTorch DCP 1.13 load (${cache})`, bytes, seconds: torchSeconds });
    ratios[`dcpjs / raw (${cache})`] = raw / ours;
    ratios[`dcpjs / PyTorch DCP (${cache})`] = torchSeconds === null ? null : torchSeconds / ours;
  }
  const ok = Object.entries(stateDict).every(([k, t]) =>
    Buffer.from(tensorBytes(t)).equals(tensorBytes(target[k] as Tensor)),
  );
  report("local-load", { ...p, bytes }, rows, ratios, [
    `page cache: ${how}; warm runs read what the previous run left in the cache`,
    `loaded tensors equal the saved ones: ${ok}`,
    ...(torch ? [] : ["PyTorch DCP column skipped: Debian's python3-torch is not installed"]),
  ]);
  await rm(p.dir, { recursive: true, force: true });
}
