// The sharing plan of in-process ranks: the tags a rank's local plan carries, the coordinator's
// checks and choices over every plan, and which of a rank's runs go through a shared read.
import { CheckpointError } from "../errors.js";
import type { LoadPlan, ReadItem } from "../plan/metadata.js";
import type { ItemRead } from "./read-locate.js";
import type { FileReadSchedule, ReadRun } from "./read-schedule.js";
import { PROCESS_ID, type ReadPlanData, type SharedChunkReads } from "./shared-chunk-reads.js";

/** What a reader's `prepareLocalPlan` adds to a plan: the committed checkpoint the rank read. */
export interface CommittedPlanData {
  /** The save id (or length and CRC) of the `.metadata` the rank planned from. */
  readonly committed?: string;
}

/**
 * A rank's local plan tagged for the coordinator: with this process ({@link PROCESS_ID}), so ranks
 * of one process may share saved chunks, and with the committed checkpoint the rank read.
 * @param plan - the rank's local plan.
 * @param committed - which committed `.metadata` the rank read, if known.
 */
export function tagLocalPlan(plan: LoadPlan, committed: string | undefined): LoadPlan {
  const data: ReadPlanData & CommittedPlanData = {
    ...(plan.storageData as object | undefined),
    process: PROCESS_ID,
    ...(committed !== undefined ? { committed } : {}),
  };
  return { ...plan, storageData: data };
}

/**
 * Checks that every rank planned from the same committed `.metadata` (the tags of
 * {@link tagLocalPlan}): ranks that read it at different moments while an overwrite committed would
 * otherwise load a mix of two checkpoints.
 * @param path - the checkpoint, for the message.
 * @param plans - every rank's plan.
 * @throws {@link CheckpointError} `CHECKPOINT_SUPERSEDED` naming the first rank that differs.
 */
export function assertOneCommit(path: string, plans: readonly LoadPlan[]): void {
  const seen = plans.map((p) => (p.storageData as CommittedPlanData | undefined)?.committed);
  const other = seen.findIndex((c) => c !== seen[0]);
  if (other > 0) {
    throw new CheckpointError(
      "CHECKPOINT_SUPERSEDED",
      `Expected every rank to load one committed checkpoint at ${path}, but rank 0 read the .metadata of save ${seen[0]} and rank ${other} that of ${seen[other]} (a newer save committed between their reads)`,
    );
  }
}

/**
 * The saved chunks that ranks of one process read whole, once between them, rather than each its
 * part: those two or more of its ranks read, whose parts add up to at least the chunk's length.
 *
 * @param plans - every rank's plan, tagged with its process ({@link tagLocalPlan}).
 * @param located - what an item (item `index` of rank `rank`'s plan) reads on its own.
 * @returns per rank, the keys of the saved chunks it reads whole.
 */
export function wholeForProcesses(
  plans: readonly LoadPlan[],
  located: (item: ReadItem, index: number, rank: number) => ItemRead,
): Set<string>[] {
  const whole = plans.map(() => new Set<string>());
  // Only ranks that share their process with another can share a chunk.
  const ranksOf = new Map<string, number>();
  for (const plan of plans) {
    const process = (plan.storageData as ReadPlanData | undefined)?.process;
    if (process !== undefined) ranksOf.set(process, (ranksOf.get(process) ?? 0) + 1);
  }
  const byProcess = new Map<string, Map<string, { ranks: number[]; bytes: number; length: number }>>();
  plans.forEach((plan, rank) => {
    const process = (plan.storageData as ReadPlanData | undefined)?.process;
    if (process === undefined || ranksOf.get(process)! < 2) return;
    let chunks = byProcess.get(process);
    if (!chunks) {
      chunks = new Map();
      byProcess.set(process, chunks);
    }
    const { items } = plan;
    for (let i = 0; i < items.length; i++) {
      const read = located(items[i]!, i, rank);
      if (read.info.checksumBlocks === undefined) continue; // read whole in any case
      let c = chunks.get(read.chunk);
      if (!c) {
        c = { ranks: [], bytes: 0, length: read.info.length };
        chunks.set(read.chunk, c);
      }
      if (c.ranks.at(-1) !== rank) c.ranks.push(rank);
      c.bytes += read.end - read.start;
    }
  });
  for (const chunks of byProcess.values())
    for (const [chunk, c] of chunks)
      if (c.ranks.length > 1 && c.bytes >= c.length) for (const rank of c.ranks) whole[rank]!.add(chunk);
  return whole;
}

/**
 * The saved chunk a run reads through `sharing` — a lone staged stored item whose chunk other
 * ranks of this process share — if any.
 * @param run - a scheduled run.
 * @param sharing - this load's shared reads, if the rank shares any.
 */
export function sharedKey(
  run: ReadRun<ItemRead, unknown>,
  sharing: SharedChunkReads | undefined,
): string | undefined {
  if (!sharing || run.placement !== "staged" || run.ranges.length !== 1) return undefined;
  const { key } = run.ranges[0]!.items[0]!;
  return sharing.shares(key) ? key : undefined;
}

/**
 * Lets go at once of the shared chunks this rank reads itself (in place, or with their
 * neighbours), so the other ranks neither read them for it nor keep a copy waiting for it.
 * @param schedules - the rank's schedules.
 * @param sharing - this load's shared reads.
 */
export function releaseOwnReads(
  schedules: readonly FileReadSchedule<ItemRead, unknown>[],
  sharing: SharedChunkReads,
): void {
  for (const schedule of schedules)
    for (const run of schedule.runs)
      if (sharedKey(run, sharing) === undefined)
        for (const stored of run.ranges) sharing.release(stored.items[0]!.key);
}
