import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { createLocalProcessGroups, emptyTensor, load, save, shardTensor, type Tensor } from "@dcpjs/core";
import { report, timed } from "./report.js";
import { float32StateDict } from "./state.js";

/**
 * `reshard`: a state dict saved by 4 row-sharded ranks, loaded by 3 ranks sharded by columns,
 * against a plain load of the same checkpoint by 4 ranks with the saved sharding (in-process
 * ranks, local folder, warm page cache).
 */
export async function reshard(tensors: number, tensorMib: number, reps: number, dir: string): Promise<void> {
  const { stateDict, bytes } = float32StateDict(tensors, tensorMib);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const ckpt = join(dir, "ckpt");
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
  const run = async (world: number, dim: number) => {
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
  for (let rep = 0; rep < reps; rep++) {
    plain = Math.min(plain, await run(4, 0));
    resharded = Math.min(resharded, await run(3, 1));
  }
  report(
    "reshard",
    { tensors, tensorMib, reps, bytes },
    [
      { name: "plain load (4 ranks, rows as saved)", bytes, seconds: plain },
      { name: "resharded load (3 ranks, columns)", bytes, seconds: resharded },
    ],
    { "resharded / plain": plain / resharded },
    [
      "each column rank needs part of every saved row chunk, whose CRC covers it whole: the in-process ranks read and verify each chunk once between them (shared chunk reads), then each copies its column strip out of it — CRCs and copies on worker threads (tensors from emptyTensor lie in shared memory)",
      `shape per tensor: [${(stateDict.w0 as Tensor).shape.join(", ")}]`,
    ],
  );
  await rm(dir, { recursive: true, force: true });
}
