// The one ordered read-ahead window: fetches run ahead of their consumer, results come back in
// order, and nothing is left behind when the consumer stops.

/**
 * Yields `fetch(item)` for each of `items` in order while up to `ahead` later fetches already run
 * (the window is refilled as each result is taken). A fetch that fails is thrown when its turn
 * comes — the first failure in order, which the caller sees where it awaits. When the consumer
 * stops early (a `break`, a throw in its loop body, or that failure), the fetches still in flight
 * are settled before the generator returns, so none ends as an unhandled rejection and none
 * outlives the loop; cancelling them is the caller's (an `AbortSignal` its `fetch` honours).
 *
 * @param items - what to fetch, in the order results are wanted (iterated lazily, one ahead of the window).
 * @param fetch - starts one fetch; receives the item and its index.
 * @param ahead - fetches in flight at most (an integer ≥ 1).
 * @throws RangeError when `ahead` is not an integer ≥ 1; whatever a fetch rejects with.
 */
export async function* prefetchInOrder<T, R>(
  items: Iterable<T>,
  fetch: (item: T, index: number) => Promise<R>,
  ahead: number,
): AsyncGenerator<R, void, undefined> {
  if (!Number.isInteger(ahead) || ahead < 1)
    throw new RangeError(`Expected ahead to be an integer ≥ 1, got ${ahead}`);
  const source = items[Symbol.iterator]();
  const inFlight: Promise<R>[] = [];
  let index = 0;
  let exhausted = false;
  const refill = () => {
    while (!exhausted && inFlight.length < ahead) {
      const next = source.next();
      if (next.done) {
        exhausted = true;
        break;
      }
      const fetching = fetch(next.value, index++);
      fetching.catch(() => {}); // surfaced when its turn comes, or settled in `finally`
      inFlight.push(fetching);
    }
  };
  try {
    refill();
    while (inFlight.length > 0) {
      const result = await inFlight.shift()!;
      refill();
      yield result;
    }
  } finally {
    await Promise.allSettled(inFlight);
  }
}
