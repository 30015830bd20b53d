import { rm } from "node:fs/promises";
import { join } from "node:path";
import {
  dcpjsContender,
  type FreshContender,
  type FreshState,
  freshRatios,
  freshRows,
  type RawFiles,
  rawNodeContender,
  rawPythonContender,
  runFreshContenders,
  torchContender,
} from "./fresh-process.js";
import type { Row } from "./report.js";
import { dropCaches, torchVenvPython } from "./system.js";

// The fresh-process rows of `local-save`, `local-load` and `many-small` (see fresh-process.ts),
// each benchmark's hook one call.

/** A PyTorch DCP peer: its label, interpreter and checkpoint folder. */
export interface FreshTorchPeer {
  readonly label: string;
  readonly python: string;
  readonly dir: string;
}

/** Rows and ratios to add to a benchmark's report. */
export interface FreshResults {
  readonly rows: Row[];
  readonly ratios: Record<string, number>;
}

/** The shape of the local benchmarks: `tensors` float32 tensors of `tensorMib` MiB (`w0`, `w1`, …). */
export interface FreshLocalParams {
  readonly tensors: number;
  readonly tensorMib: number;
  readonly reps: number;
  readonly dir: string;
  readonly threadCount: number;
}

function localState(p: FreshLocalParams): FreshState {
  const rows = (p.tensorMib * 1024 * 1024) / 4 / 1024;
  return {
    keys: Array.from({ length: p.tensors }, (_, i) => `w${i}`),
    shapes: Array.from({ length: p.tensors }, () => [rows, 1024]),
  };
}

/** The raw files of the local benchmarks: tensor i in file `raw-{i % threads}.bin`, back to back. */
function localRawFiles(p: FreshLocalParams, prefix: string): RawFiles {
  return Array.from({ length: p.threadCount }, (_, f) => ({
    path: join(p.dir, `${prefix}-${f}.bin`),
    sizes: Array.from({ length: p.tensors }, (_, i) => i).flatMap((i) =>
      i % p.threadCount === f ? [p.tensorMib * 1024 * 1024] : [],
    ),
  }));
}

async function rawContenders(
  dir: string,
  mode: "save" | "load",
  files: RawFiles,
  python: string | undefined,
): Promise<FreshContender[]> {
  const list = [await rawNodeContender(dir, mode, files)];
  // Huge pages change only what faulting fresh destination pages costs: loads only.
  if (mode === "load") list.push(await rawNodeContender(dir, mode, files, "huge pages"));
  if (python) {
    list.unshift(await rawPythonContender(python, dir, mode, files, "numpy"));
    if (mode === "load") list.splice(1, 0, await rawPythonContender(python, dir, mode, files, "bytearray"));
  }
  return list;
}

/**
 * dcpjs's ratios against every other contender, and dcpjs with huge pages against the raw reads
 * that have them too (`numpy.empty` madvises its own), span and process wall.
 */
function ratiosOf(results: Awaited<ReturnType<typeof runFreshContenders>>, what: string) {
  return {
    ...freshRatios(results, what),
    ...freshRatios(results, what, "dcpjs, huge pages", ["raw Python numpy", "raw node:fs, huge pages"]),
  };
}

/**
 * `local-save`'s fresh-process rows: raw (Python `write` from `numpy`, Node `node:fs`), dcpjs and
 * every PyTorch peer, each rep a new process that fills its source, saves and fsyncs.
 */
export async function freshLocalSave(
  p: FreshLocalParams,
  peers: readonly FreshTorchPeer[],
): Promise<FreshResults> {
  const bytes = p.tensors * p.tensorMib * 1024 * 1024;
  const python = await torchVenvPython();
  const contenders = [
    ...(await rawContenders(p.dir, "save", localRawFiles(p, "fresh-raw"), python)),
    await dcpjsContender(p.dir, "save", join(p.dir, "fresh-dcpjs"), localState(p), p.threadCount),
    ...peers.map((peer) =>
      torchContender(peer.label, peer.python, [
        "save",
        join(peer.dir, "fresh"),
        String(p.tensors),
        String(p.tensorMib),
        "warm",
        String(p.threadCount),
      ]),
    ),
  ];
  const results = await runFreshContenders(contenders, p.reps);
  await rm(join(p.dir, "fresh-dcpjs"), { recursive: true, force: true });
  for (const peer of peers) await rm(join(peer.dir, "fresh"), { recursive: true, force: true });
  for (const f of localRawFiles(p, "fresh-raw")) await rm(f.path, { force: true });
  return { rows: freshRows(results, "save", bytes), ratios: ratiosOf(results, "save") };
}

/**
 * `local-load`'s fresh-process rows for one page-cache state: raw (Python `readinto` into `numpy`
 * and `bytearray` memory, Node `node:fs`), dcpjs and every PyTorch peer, each rep a new process
 * that allocates its destination and loads into it; `cold` evicts `files` before every rep.
 *
 * @param ckpt - dcpjs's checkpoint folder (already saved).
 * @param peers - PyTorch's checkpoints (already saved in `peer.dir`).
 */
export async function freshLocalLoad(
  p: FreshLocalParams,
  cache: "cold" | "warm",
  ckpt: string,
  peers: readonly FreshTorchPeer[],
  files: readonly string[],
): Promise<FreshResults> {
  const bytes = p.tensors * p.tensorMib * 1024 * 1024;
  const python = await torchVenvPython();
  const contenders = [
    ...(await rawContenders(p.dir, "load", localRawFiles(p, "raw"), python)),
    await dcpjsContender(p.dir, "load", ckpt, localState(p), p.threadCount),
    await dcpjsContender(p.dir, "load", ckpt, localState(p), p.threadCount, "huge pages"),
    ...peers.map((peer) =>
      torchContender(peer.label, peer.python, [
        "load",
        peer.dir,
        String(p.tensors),
        String(p.tensorMib),
        "warm",
        String(p.threadCount),
      ]),
    ),
  ];
  const prepare = async () => {
    if (cache === "cold") await dropCaches(files);
  };
  const results = await runFreshContenders(contenders, p.reps, prepare);
  return { rows: freshRows(results, `load (${cache})`, bytes), ratios: ratiosOf(results, `load (${cache})`) };
}

/** `many-small`'s set as the fresh children see it. */
export interface FreshSmallSet {
  /** Scratch folder. */
  readonly dir: string;
  /** The fqns and shapes of the (float32) tensors. */
  readonly state: FreshState;
  /** Their bytes. */
  readonly bytes: number;
  /** dcpjs's checkpoint (already saved) and the raw file of the same bytes (already written). */
  readonly ckpt: string;
  readonly rawFile: string;
  /** PyTorch DCP 2.13's venv python (absent: no PyTorch rows), its folder and the shapes JSON. */
  readonly venv: string | undefined;
  readonly torchDir: string;
  readonly shapesFile: string;
  readonly reps: number;
}

/**
 * `many-small`'s fresh-process rows: save (raw Python and Node writes of the same bytes as one
 * buffer, dcpjs, PyTorch DCP 2.13) and warm load (the same, reads), each rep a new process.
 */
export async function freshManySmall(s: FreshSmallSet): Promise<FreshResults> {
  const saveFiles: RawFiles = [{ path: join(s.dir, "fresh-raw.bin"), sizes: [s.bytes] }];
  const loadFiles: RawFiles = [{ path: s.rawFile, sizes: [s.bytes] }];
  const torchArgs = (mode: string, dir: string) => [mode, dir, s.shapesFile, "0", "warm", "1"];
  const torch = (mode: string, dir: string) =>
    s.venv ? [torchContender("PyTorch DCP 2.13", s.venv, torchArgs(mode, dir))] : [];
  const saved = await runFreshContenders(
    [
      ...(await rawContenders(s.dir, "save", saveFiles, s.venv)),
      await dcpjsContender(s.dir, "save", join(s.dir, "fresh-dcpjs"), s.state, 1),
      ...torch("save", join(s.dir, "fresh-torch")),
    ],
    s.reps,
  );
  const loaded = await runFreshContenders(
    [
      ...(await rawContenders(s.dir, "load", loadFiles, s.venv)),
      await dcpjsContender(s.dir, "load", s.ckpt, s.state, 1),
      await dcpjsContender(s.dir, "load", s.ckpt, s.state, 1, "huge pages"),
      ...torch("load", s.torchDir),
    ],
    s.reps,
  );
  return {
    rows: [...freshRows(saved, "save", s.bytes), ...freshRows(loaded, "load (warm)", s.bytes)],
    ratios: { ...ratiosOf(saved, "save"), ...ratiosOf(loaded, "load (warm)") },
  };
}
