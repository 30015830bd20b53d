import { CheckpointError, CheckpointException, type RankFailure, toRankFailure } from "../errors.js";
import type { ProcessGroup } from "./process-group.js";

type Outcome<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly failures: RankFailure[] };

async function attempt<T>(rank: number, fn: () => Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await fn() };
  } catch (error) {
    return { ok: false, failures: [toRankFailure(rank, error)] };
  }
}

function failuresOf(outcomes: readonly Outcome<unknown>[]): RankFailure[] {
  return outcomes.flatMap((o) => (o.ok ? [] : o.failures));
}

/**
 * Runs one of the group's own operations; a failure of the group itself (a timeout, a lost
 * server) keeps its code and gains the step and rank in its message.
 */
async function transport<T>(pg: ProcessGroup, step: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    if (error instanceof CheckpointException) throw error;
    const code = error instanceof CheckpointError ? error.code : "IO_ERROR";
    const message = error instanceof Error ? error.message : String(error);
    throw new CheckpointError(code, `${message} [step "${step}", rank ${pg.rank}]`, { cause: error });
  }
}

function unwrap<T>(step: string, outcome: Outcome<T>): T {
  if (!outcome.ok) throw new CheckpointException(step, outcome.failures);
  return outcome.value;
}

/**
 * Every rank runs `mapFn`; the coordinator reduces all results to one value per rank and scatters
 * them, as DCP's `_DistWrapper.reduce_scatter`. A failure on any rank — in `mapFn` or in the
 * coordinator's `reduceFn` — makes every rank throw the same {@link CheckpointException}.
 *
 * @param pg - the group.
 * @param step - the step name for errors (`plan`).
 * @param mapFn - this rank's part.
 * @param reduceFn - the coordinator's part: all values in rank order → one value per rank.
 * @param coordinator - the coordinator rank. @default 0
 * @throws {@link CheckpointException} naming exactly the failing ranks.
 */
export async function reduceScatter<T, R>(
  pg: ProcessGroup,
  step: string,
  mapFn: () => Promise<T>,
  reduceFn: (all: T[]) => Promise<R[]>,
  coordinator = 0,
): Promise<R> {
  const local = await attempt(pg.rank, mapFn);
  let all: Outcome<T>[] | undefined = await transport(pg, step, () => pg.gather(local, coordinator));
  let results: Outcome<R>[] | undefined;
  if (all) {
    const failures = failuresOf(all);
    if (failures.length > 0) {
      results = all.map(() => ({ ok: false, failures }));
    } else {
      const values = all.map((o) => (o as { value: T }).value);
      // The gathered values go once reduced, so the coordinator does not hold them and the
      // replies at once through the scatter (at 4,096 ranks, hundreds of MB of plans each).
      all = undefined;
      const reduced = await attempt(pg.rank, () => reduceFn(values));
      results = reduced.ok
        ? reduced.value.map((value) => ({ ok: true, value }))
        : Array.from({ length: values.length }, () => reduced);
    }
  }
  all = undefined;
  return unwrap(step, await transport(pg, step, () => pg.scatter(results, coordinator)));
}

/**
 * Every rank runs `mapFn`; the coordinator reduces all results to one value and broadcasts it,
 * as DCP's `_DistWrapper.all_reduce`. Failures as in {@link reduceScatter}.
 *
 * @param pg - the group.
 * @param step - the step name for errors (`write`).
 * @param mapFn - this rank's part.
 * @param reduceFn - the coordinator's part: all values in rank order → the result.
 * @param coordinator - the coordinator rank. @default 0
 * @throws {@link CheckpointException} naming exactly the failing ranks.
 */
export async function allReduce<T, R>(
  pg: ProcessGroup,
  step: string,
  mapFn: () => Promise<T>,
  reduceFn: (all: T[]) => Promise<R>,
  coordinator = 0,
): Promise<R> {
  const local = await attempt(pg.rank, mapFn);
  const all = await transport(pg, step, () => pg.gather(local, coordinator));
  let result: Outcome<R> | undefined;
  if (all) {
    const failures = failuresOf(all);
    result =
      failures.length > 0
        ? { ok: false, failures }
        : await attempt(pg.rank, () => reduceFn(all.map((o) => (o as { value: T }).value)));
  }
  return unwrap(step, await transport(pg, step, () => pg.broadcast(result, coordinator)));
}

/**
 * Every rank runs `mapFn` and receives every rank's result, as DCP's `_DistWrapper.all_gather`.
 *
 * @param pg - the group.
 * @param step - the step name for errors (`read`).
 * @param mapFn - this rank's part.
 * @throws {@link CheckpointException} naming exactly the failing ranks.
 */
export async function allGather<T>(pg: ProcessGroup, step: string, mapFn: () => Promise<T>): Promise<T[]> {
  const local = await attempt(pg.rank, mapFn);
  const all = await transport(pg, step, () => pg.allGather(local));
  const failures = failuresOf(all);
  if (failures.length > 0) throw new CheckpointException(step, failures);
  return all.map((o) => (o as { value: T }).value);
}
