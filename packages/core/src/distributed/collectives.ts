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
 * An array of `length` values that makes each when it is read (`at(index)`) and keeps none, so
 * the root of a scatter over a group that sends one value at a time (the Redis group encodes each
 * as it writes it) holds one, not every rank's at once. Reading an element twice makes it twice.
 * Index reads, `length`, iteration and the methods that read through the indices (`entries`,
 * `map`) see the values; structured cloning does not (it is a `Proxy`).
 *
 * @param length - how many values.
 * @param at - makes the value at an index (0 ≤ index < `length`).
 * @returns an array (a `Proxy`) of `length` elements.
 */
export function lazyValues<T>(length: number, at: (index: number) => T): T[] {
  const isIndex = (property: string | symbol): property is string => {
    if (typeof property !== "string") return false;
    const index = Number(property);
    return Number.isInteger(index) && index >= 0 && index < length && String(index) === property;
  };
  return new Proxy(new Array<T>(length), {
    get: (target, property, receiver) =>
      isIndex(property) ? at(Number(property)) : Reflect.get(target, property, receiver),
    has: (target, property) => isIndex(property) || Reflect.has(target, property),
  });
}

/**
 * Every rank runs `mapFn`; the coordinator reduces all results to one value per rank and scatters
 * them, as DCP's `_DistWrapper.reduce_scatter`. A failure on any rank — in `mapFn` or in the
 * coordinator's `reduceFn` — makes every rank throw the same {@link CheckpointException}.
 *
 * @param pg - the group.
 * @param step - the step name for errors (`plan`).
 * @param mapFn - this rank's part.
 * @param reduceFn - the coordinator's part: all values in rank order → one value per rank. It
 * owns the array it is given (it may empty it, to let each value go once used), and may return
 * a {@link lazyValues} array, whose values are then made one at a time as the scatter sends them.
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
      const count = values.length;
      // The gathered values go once reduced (or as `reduceFn` uses them: it owns `values`), so the
      // coordinator does not hold them and the replies at once (at 4,096 ranks, hundreds of MB of
      // plans each).
      all = undefined;
      const reduced = await attempt(pg.rank, () => reduceFn(values));
      if (reduced.ok) {
        const replies = reduced.value;
        // Read one at a time, as `replies` may make each only when read (see `lazyValues`).
        results = lazyValues(count, (r): Outcome<R> => ({ ok: true, value: replies[r]! }));
      } else {
        results = Array.from({ length: count }, () => reduced);
      }
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
