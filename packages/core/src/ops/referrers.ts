import { listCheckpoints } from "../checkpoints.js";
import { throwIfAborted } from "../errors.js";
import type { Metadata } from "../plan/metadata.js";
import { checkpointName, parentCheckpointFolder, referencedCheckpoints } from "../storage/references.js";
import { committedMetadata } from "./locate.js";

/** A committed checkpoint of a run and the sibling checkpoints it references (its bases). */
export interface RunCheckpoint {
  readonly id: string;
  /** Its metadata, as committed. */
  readonly metadata: Metadata;
  /** The names of the siblings whose files it references ({@link referencedCheckpoints}). */
  readonly references: readonly string[];
}

/**
 * The committed checkpoints of a run (a folder or prefix and its direct sub-folders, as
 * `listCheckpoints` lists them) with their references. A checkpoint whose metadata does not read
 * (damaged, or removed since the listing) is left out.
 *
 * @param run - the run's folder or prefix.
 * @param signal - aborts the reads.
 */
export async function runCheckpoints(run: string, signal?: AbortSignal): Promise<RunCheckpoint[]> {
  const out: RunCheckpoint[] = [];
  for (const c of await listCheckpoints(run, signal ? { signal } : {})) {
    throwIfAborted(signal);
    let metadata: Metadata | undefined;
    try {
      metadata = await committedMetadata(c.id, signal);
    } catch {
      throwIfAborted(signal);
      continue; // damaged: it references nothing that can be read
    }
    if (metadata) out.push({ id: c.id, metadata, references: referencedCheckpoints(metadata) });
  }
  return out;
}

/**
 * The committed checkpoints beside `checkpointId` (under the same parent) that reference its
 * files, as their ids; empty when none does (or when the id has no parent folder).
 *
 * @param checkpointId - the checkpoint.
 * @param signal - aborts the reads.
 */
export async function referrersOf(checkpointId: string, signal?: AbortSignal): Promise<RunCheckpoint[]> {
  let parent: string;
  try {
    parent = parentCheckpointFolder(checkpointId);
  } catch {
    return []; // a bucket's root: nothing beside it can reference it
  }
  const name = checkpointName(checkpointId);
  return (await runCheckpoints(parent, signal)).filter(
    (c) => checkpointName(c.id) !== name && c.references.includes(name),
  );
}

/**
 * The checkpoints `ids` reference, with what those reference, and so on (every base a kept
 * checkpoint needs), by name; `ids` themselves included.
 *
 * @param ids - checkpoint ids of one run.
 * @param run - the run's committed checkpoints ({@link runCheckpoints}).
 */
export function referenceClosure(ids: Iterable<string>, run: readonly RunCheckpoint[]): Set<string> {
  const byName = new Map(run.map((c) => [checkpointName(c.id), c]));
  const seen = new Set<string>();
  const todo = [...ids].map(checkpointName);
  while (todo.length > 0) {
    const name = todo.pop()!;
    if (seen.has(name)) continue;
    seen.add(name);
    for (const r of byName.get(name)?.references ?? []) todo.push(r);
  }
  return seen;
}
