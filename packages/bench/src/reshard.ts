import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import {
  createLocalProcessGroups,
  emptyTensor,
  FileSystemReader,
  load,
  type StateDict,
  save,
  shardTensor,
  type Tensor,
} from "@dcpjs/core";
import type { StorageReader } from "@dcpjs/core/extend";
import { CHECKSUM_BLOCK_BYTES } from "@dcpjs/core/testing";
import { createS3Client, S3StorageReader, S3StorageWriter } from "@dcpjs/s3";
import { type Row, report, timed } from "./report.js";
import { deletePrefix } from "./s3.js";
import { BENCH_BUCKET, benchServer } from "./s3-server.js";
import { float32StateDict } from "./state.js";

/** Parameters of the reshard benchmark. */
export interface ReshardParams {
  readonly tensors: number;
  readonly tensorMib: number;
  readonly reps: number;
  readonly dir: string;
  /** Also measure row reshards from S3. */
  readonly s3: boolean;
}

/**
 * `reshard`: a state dict saved by 4 row-sharded ranks, loaded (1) by 3 in-process ranks sharded by
 * columns, against a plain load by 4 in-process ranks with the saved sharding (local folder, warm
 * page cache); (2) by 3 ranks sharded by rows, each loading on its own as a process of a
 * multi-process job would, against 4 such ranks with the saved sharding — from the folder and
 * from S3, with the bytes each fetched.
 */
export async function reshard(p: ReshardParams): Promise<void> {
  const { stateDict, bytes } = float32StateDict(p.tensors, p.tensorMib);
  await rm(p.dir, { recursive: true, force: true });
  await mkdir(p.dir, { recursive: true });
  const ckpt = join(p.dir, "ckpt");
  const view = (rank: number, world: number, dim: number, empty: boolean) =>
    Object.fromEntries(
      Object.entries(stateDict).map(([k, t]) => [
        k,
        shardTensor(empty ? emptyTensor(t.dtype, t.shape) : t, { dim, rank, worldSize: world }),
      ]),
    );
  await Promise.all(
    createLocalProcessGroups(4).map((pg) =>
      save(view(pg.rank, 4, 0, false), { checkpointId: ckpt, processGroup: pg }),
    ),
  );
  const inProcess = async (world: number, dim: number) => {
    const views = Array.from({ length: world }, (_, r) => view(r, world, dim, true));
    return timed(() =>
      Promise.all(
        createLocalProcessGroups(world).map((pg) =>
          load(views[pg.rank]!, { checkpointId: ckpt, processGroup: pg }),
        ),
      ),
    );
  };
  let plain = Number.POSITIVE_INFINITY;
  let resharded = Number.POSITIVE_INFINITY;
  for (let rep = 0; rep < p.reps; rep++) {
    plain = Math.min(plain, await inProcess(4, 0));
    resharded = Math.min(resharded, await inProcess(3, 1));
  }
  const local = await alone(p.reps, (onProgress) => new FileSystemReader({ path: ckpt, onProgress }), view);
  const rows: Row[] = [
    { name: "plain load (4 ranks, rows as saved)", bytes, seconds: plain },
    { name: "resharded load (3 ranks, columns)", bytes, seconds: resharded },
    ...local.rows("folder", bytes),
  ];
  const ratios: Record<string, number | null> = {
    "resharded / plain": plain / resharded,
    "rows→3 alone / plain alone (folder)": local.plain / local.resharded,
  };
  if (p.s3) {
    const server = await benchServer();
    try {
      const client = createS3Client(server.config);
      const prefix = `bench-reshard-${Date.now()}`;
      const uri = `s3://${BENCH_BUCKET}/${prefix}/ckpt`;
      await Promise.all(
        createLocalProcessGroups(4).map((pg) =>
          save(view(pg.rank, 4, 0, false), {
            storageWriter: new S3StorageWriter({ path: uri, client }),
            processGroup: pg,
          }),
        ),
      );
      const s3 = await alone(
        p.reps,
        (onProgress) => new S3StorageReader({ path: uri, client, onProgress }),
        view,
      );
      rows.push(...s3.rows(`S3 (${server.backend})`, bytes));
      ratios["rows→3 alone / plain alone (S3)"] = s3.plain / s3.resharded;
      await deletePrefix(client, prefix);
      client.destroy();
    } finally {
      await server.stop();
    }
  }
  report("reshard", { tensors: p.tensors, tensorMib: p.tensorMib, reps: p.reps, bytes }, rows, ratios, [
    "columns: each column rank needs part of every saved row chunk: the in-process ranks read and verify each chunk once between them (shared chunk reads), then each copies its column strip out of it — CRCs and copies on worker threads (tensors from emptyTensor lie in shared memory)",
    `rows alone: each rank reads only the ${CHECKSUM_BLOCK_BYTES / 2 ** 20} MiB checksum blocks of a saved chunk its rows lie in, verified by the running CRC-32s .metadata records at block ends ("fetched" ÷ the data; whole chunks would be 1.50×)`,
    `shape per tensor: [${(stateDict.w0 as Tensor).shape.join(", ")}]`,
  ]);
  await rm(p.dir, { recursive: true, force: true });
}

/**
 * Loads the checkpoint by 4 ranks with the saved row sharding and by 3 row ranks, each rank a load
 * of its own (world size 1, all at once): best times, and the bytes the 3 ranks fetched.
 */
async function alone(
  reps: number,
  reader: (onProgress: (p: { bytes: number }) => void) => StorageReader,
  view: (rank: number, world: number, dim: number, empty: boolean) => StateDict,
): Promise<{ plain: number; resharded: number; rows(where: string, bytes: number): Row[] }> {
  let fetched = 0;
  const onProgress = ({ bytes }: { bytes: number }) => {
    fetched += bytes;
  };
  const run = (world: number) => {
    const views = Array.from({ length: world }, (_, r) => view(r, world, 0, true));
    fetched = 0;
    return timed(() => Promise.all(views.map((sd) => load(sd, { storageReader: reader(onProgress) }))));
  };
  let plain = Number.POSITIVE_INFINITY;
  let resharded = Number.POSITIVE_INFINITY;
  let plainFetched = 0;
  let reshardedFetched = 0;
  for (let rep = 0; rep < reps; rep++) {
    plain = Math.min(plain, await run(4));
    plainFetched = fetched;
    resharded = Math.min(resharded, await run(3));
    reshardedFetched = fetched;
  }
  return {
    plain,
    resharded,
    rows: (where, bytes) => [
      {
        name: `plain, 4 ranks alone (${where})`,
        bytes,
        seconds: plain,
        extra: { fetched: `${(plainFetched / bytes).toFixed(2)}×` },
      },
      {
        name: `rows → 3 ranks alone (${where})`,
        bytes,
        seconds: resharded,
        extra: { fetched: `${(reshardedFetched / bytes).toFixed(2)}×` },
      },
    ],
  };
}
