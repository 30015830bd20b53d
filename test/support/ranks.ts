import { createLocalProcessGroups, type ProcessGroup, save, shardTensor, type Tensor } from "@dcpjs/core";

/** Runs `fn` on `n` in-process ranks at once and returns each rank's settled outcome, in rank order. */
export async function runRanks<T>(
  n: number,
  fn: (pg: ProcessGroup) => Promise<T>,
): Promise<PromiseSettledResult<T>[]> {
  const groups = createLocalProcessGroups(n);
  return Promise.allSettled(groups.map((pg) => fn(pg)));
}

/** Runs `fn` on `n` in-process ranks and returns their results; throws the first rejection. */
export async function allRanks<T>(n: number, fn: (pg: ProcessGroup) => Promise<T>): Promise<T[]> {
  const settled = await runRanks(n, fn);
  return settled.map((s) => {
    if (s.status === "rejected") throw s.reason;
    return s.value;
  });
}

/**
 * Saves `tensors` from `worldSize` in-process ranks, each its shard along `dim` (`shardTensor`).
 *
 * @param tensors - whole tensors by fqn.
 * @param dir - the checkpoint folder.
 * @param worldSize - the ranks.
 * @param dim - the dimension sharded. @default 0 (rows)
 */
export async function saveShards(
  tensors: Readonly<Record<string, Tensor>>,
  dir: string,
  worldSize: number,
  dim = 0,
): Promise<void> {
  await allRanks(worldSize, (pg) =>
    save(
      Object.fromEntries(
        Object.entries(tensors).map(([k, t]) => [k, shardTensor(t, { dim, rank: pg.rank, worldSize })]),
      ),
      { checkpointId: dir, processGroup: pg },
    ),
  );
}
