import { type FileHandle, mkdir, open, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { FileSystemReader, FileSystemWriter, load, save, type Tensor, tensorBytes } from "@dcpjs/core";
import { freshLocalLoad, freshLocalSave } from "./fresh-rows.js";
import { bestOf, type Row, report, timed } from "./report.js";
import { emptyLike, float32StateDict } from "./state.js";
import { DEBIAN_PYTHON, dropCaches, pythonHas, runPython, torchVenvPython } from "./system.js";

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
  /** Also the fresh-process, fresh-memory rows (fresh-rows.ts). @default true */
  readonly fresh?: boolean;
}

/** The raw baseline's files: `threads` of them, tensor i in file `i % threads`, back to back. */
function rawLayout(
  dir: string,
  tensors: readonly Tensor[],
  threads: number,
): { path: string; tensors: Tensor[] }[] {
  return Array.from({ length: threads }, (_, f) => ({
    path: join(dir, `raw-${f}.bin`),
    tensors: tensors.filter((_, i) => i % threads === f),
  }));
}

/**
 * Streams every raw file at once, one sequential stream each: `io` moves bytes between a tensor
 * and its place in the file (returning how many it moved) until each tensor is done.
 */
function rawStreams(
  files: readonly { path: string; tensors: Tensor[] }[],
  flags: "w" | "r",
  io: (fh: FileHandle, bytes: Uint8Array, done: number, position: number) => Promise<number>,
): Promise<number> {
  return timed(() =>
    Promise.all(
      files.map(async (f) => {
        const fh = await open(f.path, flags);
        let position = 0;
        for (const t of f.tensors) {
          const bytes = tensorBytes(t);
          let done = 0;
          while (done < bytes.byteLength) done += await io(fh, bytes, done, position + done);
          position += bytes.byteLength;
        }
        if (flags === "w") await fh.sync();
        await fh.close();
      }),
    ),
  );
}

/**
 * The machine's limit for a save: the same bytes written from tensor memory and fsynced, as
 * `threads` files written at once (one sequential stream each) — as many as dcpjs's threadCount.
 */
async function rawWrite(dir: string, tensors: readonly Tensor[], threads: number): Promise<number> {
  const files = rawLayout(dir, tensors, threads);
  await Promise.all(files.map((f) => rm(f.path, { force: true })));
  return rawStreams(
    files,
    "w",
    async (fh, bytes, done, at) => (await fh.write(bytes, done, bytes.byteLength - done, at)).bytesWritten,
  );
}

/**
 * The machine's limit for a load: the same bytes read straight into preallocated tensors, from the
 * files of {@link rawWrite} read at once (one sequential stream each).
 */
async function rawRead(dir: string, tensors: readonly Tensor[], threads: number): Promise<number> {
  return rawStreams(
    rawLayout(dir, tensors, threads),
    "r",
    async (fh, bytes, done, at) => (await fh.read(bytes, done, bytes.byteLength - done, at)).bytesRead,
  );
}

/** A PyTorch DCP to compare with: its label, interpreter and scratch folder. */
interface TorchPeer {
  readonly label: string;
  readonly python: string;
  readonly dir: string;
}

/** torch 2.13 (the cached venv, installed from local wheels when missing) and, when installed, Debian's 1.13. */
async function torchPeers(dir: string): Promise<TorchPeer[]> {
  const peers: TorchPeer[] = [];
  const venv = await torchVenvPython();
  if (venv) peers.push({ label: "PyTorch DCP 2.13", python: venv, dir: join(dir, "torch-2.13") });
  if (await pythonHas("torch"))
    peers.push({ label: "PyTorch DCP 1.13", python: DEBIAN_PYTHON, dir: join(dir, "torch-1.13") });
  return peers;
}

const SKIPPED =
  "PyTorch DCP 1.13 column skipped: Debian's python3-torch is not installed (apt-get install python3-torch)";

/**
 * `local-save`: dcpjs's save of `tensors × tensorMib` float32 into a folder, against the raw
 * write+fsync of the same bytes and against PyTorch DCP 2.13's `FileSystemWriter` (`thread_count` as
 * dcpjs's `threadCount`; and 1.13's, one file per rank, when Debian's python3-torch is installed),
 * interleaved rep by rep.
 */
export async function localSave(p: LocalParams): Promise<void> {
  const { stateDict, bytes } = float32StateDict(p.tensors, p.tensorMib);
  const tensors = Object.values(stateDict);
  await mkdir(p.dir, { recursive: true });
  const peers = await torchPeers(p.dir);
  const times = { raw: Number.POSITIVE_INFINITY, ours: Number.POSITIVE_INFINITY };
  const peerTimes = peers.map(() => Number.POSITIVE_INFINITY);
  for (let rep = 0; rep < p.reps; rep++) {
    times.raw = Math.min(times.raw, await rawWrite(p.dir, tensors, p.threadCount));
    for (const f of rawLayout(p.dir, tensors, p.threadCount)) await rm(f.path, { force: true });
    const ckpt = join(p.dir, "dcpjs");
    await rm(ckpt, { recursive: true, force: true });
    times.ours = Math.min(
      times.ours,
      await timed(() =>
        save(stateDict, { storageWriter: new FileSystemWriter({ path: ckpt, threadCount: p.threadCount }) }),
      ),
    );
    await rm(ckpt, { recursive: true, force: true });
    for (const [i, peer] of peers.entries()) {
      const r = await runPython<{ seconds: number }>(
        TORCH_PEER,
        ["save", peer.dir, String(p.tensors), String(p.tensorMib), "warm", String(p.threadCount)],
        {},
        peer.python,
      );
      peerTimes[i] = Math.min(peerTimes[i]!, r.seconds);
      await rm(peer.dir, { recursive: true, force: true });
    }
  }
  const fresh = p.fresh === false ? undefined : await freshLocalSave(p, peers);
  const rows: Row[] = [
    {
      name: `raw node:fs write + fsync (${p.threadCount} file${p.threadCount > 1 ? "s" : ""})`,
      bytes,
      seconds: times.raw,
    },
    { name: `dcpjs save (threadCount ${p.threadCount})`, bytes, seconds: times.ours },
    ...peers.map((peer, i) => ({ name: `${peer.label} save`, bytes, seconds: peerTimes[i]! })),
    ...(fresh?.rows ?? []),
  ];
  report(
    "local-save",
    { ...p, bytes },
    rows,
    {
      "dcpjs / raw": times.raw / times.ours,
      ...Object.fromEntries(peers.map((peer, i) => [`dcpjs / ${peer.label}`, peerTimes[i]! / times.ours])),
      ...fresh?.ratios,
    },
    peers.some((x) => x.label.endsWith("1.13")) ? [] : [SKIPPED],
  );
}

/**
 * `local-load`: dcpjs's load of the same checkpoint into preallocated tensors, against raw reads of
 * the same bytes into preallocated tensors and PyTorch DCP 2.13's (and 1.13's) `FileSystemReader`, with a cold
 * page cache (dropped before every run) and a warm one.
 */
export async function localLoad(p: LocalParams): Promise<void> {
  const { stateDict, bytes } = float32StateDict(p.tensors, p.tensorMib);
  const tensors = Object.values(stateDict);
  await rm(p.dir, { recursive: true, force: true });
  await mkdir(p.dir, { recursive: true });
  const rawFiles = rawLayout(p.dir, tensors, p.threadCount).map((f) => f.path);
  const ckpt = join(p.dir, "dcpjs");
  await rawWrite(p.dir, tensors, p.threadCount);
  await save(stateDict, { storageWriter: new FileSystemWriter({ path: ckpt, threadCount: p.threadCount }) });
  const peers = await torchPeers(p.dir);
  for (const peer of peers) {
    await runPython(
      TORCH_PEER,
      ["save", peer.dir, String(p.tensors), String(p.tensorMib), "warm", String(p.threadCount)],
      {},
      peer.python,
    );
  }
  const target = emptyLike(stateDict);
  const targetTensors = Object.values(target) as Tensor[];
  const files = [
    ...rawFiles,
    ...(await readdir(ckpt)).map((f) => join(ckpt, f)),
    ...(
      await Promise.all(peers.map(async (peer) => (await readdir(peer.dir)).map((f) => join(peer.dir, f))))
    ).flat(),
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
      return rawRead(p.dir, targetTensors, p.threadCount);
    });
    const ours = await bestOf(p.reps, async () => {
      await prepare();
      return timed(() => load(target, { storageReader: new FileSystemReader({ path: ckpt }) }));
    });
    const peerSeconds: number[] = [];
    for (const peer of peers) {
      peerSeconds.push(
        await bestOf(p.reps, async () => {
          await prepare();
          return (
            await runPython<{ seconds: number }>(
              TORCH_PEER,
              ["load", peer.dir, String(p.tensors), String(p.tensorMib), cache, String(p.threadCount)],
              {},
              peer.python,
            )
          ).seconds;
        }),
      );
    }
    rows.push(
      {
        name: `raw node:fs read, ${p.threadCount} file${p.threadCount > 1 ? "s" : ""} (${cache})`,
        bytes,
        seconds: raw,
      },
      { name: `dcpjs load (${cache})`, bytes, seconds: ours },
    );
    peers.forEach((peer, i) => {
      rows.push({ name: `${peer.label} load (${cache})`, bytes, seconds: peerSeconds[i]! });
    });
    ratios[`dcpjs / raw (${cache})`] = raw / ours;
    peers.forEach((peer, i) => {
      ratios[`dcpjs / ${peer.label} (${cache})`] = peerSeconds[i]! / ours;
    });
    if (p.fresh !== false) {
      const fresh = await freshLocalLoad(p, cache, ckpt, peers, files);
      rows.push(...fresh.rows);
      Object.assign(ratios, fresh.ratios);
    }
  }
  const ok = Object.entries(stateDict).every(([k, t]) =>
    Buffer.from(tensorBytes(t)).equals(tensorBytes(target[k] as Tensor)),
  );
  report("local-load", { ...p, bytes }, rows, ratios, [
    `page cache: ${how}; warm runs read what the previous run left in the cache`,
    `loaded tensors equal the saved ones: ${ok}`,
    ...(peers.some((x) => x.label.endsWith("1.13")) ? [] : [SKIPPED]),
  ]);
  await rm(p.dir, { recursive: true, force: true });
}
