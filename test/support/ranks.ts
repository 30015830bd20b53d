import { createLocalProcessGroups, type ProcessGroup } from "@dcpjs/core";

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
