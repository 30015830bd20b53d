/**
 * Which plan writes each distinct item of a save, as DCP's `dedup_save_plans`: among the plans that
 * hold it, the one with the fewest bytes planned so far (each item adding its global tensor's bytes,
 * or 1 for a value; ties to the lowest rank), items taken in id order — or always the lowest rank
 * holding it with `saveToLowestRank`. One home for the choice, whether the plans are objects or
 * columns.
 *
 * @param itemIds - per plan, per item: its distinct item's id (0 … `distinct − 1`, numbered in
 *   first-appearance order).
 * @param distinct - how many distinct items there are.
 * @param saveToLowestRank - give every replicated item to the lowest rank holding it.
 * @param sizeOf - the bytes item `id` adds to its writer's plan (0 for a value).
 * @returns per distinct item: the plan that writes it.
 */
export function dedupOwners(
  itemIds: readonly ArrayLike<number>[],
  distinct: number,
  saveToLowestRank: boolean,
  sizeOf: (id: number) => number,
): Int32Array {
  // Each item's holders, in plan order: counts, then starts, then the plans.
  const start = new Int32Array(distinct + 1);
  for (const column of itemIds) for (let i = 0; i < column.length; i++) start[column[i]! + 1]!++;
  for (let id = 0; id < distinct; id++) start[id + 1]! += start[id]!;
  const holders = new Int32Array(start[distinct]!);
  const fill = start.slice(0, distinct);
  itemIds.forEach((column, p) => {
    for (let i = 0; i < column.length; i++) holders[fill[column[i]!]!++] = p;
  });
  const planned = new Float64Array(itemIds.length);
  const owner = new Int32Array(distinct);
  for (let id = 0; id < distinct; id++) {
    let chosen = holders[start[id]!]!;
    const end = start[id + 1]!;
    if (!saveToLowestRank && end - start[id]! > 1) {
      for (let h = start[id]!; h < end; h++) {
        const p = holders[h]!;
        if (planned[p]! < planned[chosen]! || (planned[p] === planned[chosen] && p < chosen)) chosen = p;
      }
    }
    planned[chosen]! += sizeOf(id) || 1;
    owner[id] = chosen;
  }
  return owner;
}
