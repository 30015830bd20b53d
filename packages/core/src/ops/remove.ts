import { isDamagedMetadataError } from "../checkpoints.js";
import { CheckpointError, NotFoundError, throwIfAborted } from "../errors.js";
import type { Metadata } from "../plan/metadata.js";
import { isDataFile, isMetadataTmpFile, isSaveLeaseFile, METADATA_FILE } from "../storage/layout.js";
import {
  BASE_LEASE_GRACE_MS,
  baseLeases,
  isBaseLeaseFile,
  markRemoving,
  REMOVING_FILE,
  unmarkRemoving,
} from "../storage/references.js";
import { committedMetadata, type Located, locate } from "./locate.js";
import type { OperationProgress } from "./progress.js";
import { referrersOf } from "./referrers.js";

/** What {@link removeCheckpoint} and `collectGarbage` removed (or, dry, would remove). */
export interface RemovalReport {
  /** The files removed (names in the checkpoint), or with `keepLast` the checkpoints removed whole (ids). */
  readonly removed: string[];
  /** Bytes removed (of the files as listed, or of the checkpoints' data files). */
  readonly bytes: number;
  /** Incomplete uploads aborted (S3's multipart uploads). */
  readonly uploads: number;
  /**
   * With `force`: the committed checkpoints that referenced the removed one's files (incremental
   * checkpoints whose base it was) — they no longer load. Absent when none did.
   */
  readonly broken?: string[];
}

/** Options of {@link removeCheckpoint}. */
export interface RemoveOptions {
  /**
   * Remove what is there even without a committed checkpoint, or with a damaged one (its metadata
   * does not read: removed with every data file), or one that committed checkpoints reference or
   * an in-flight save holds a lease on (the report's `broken` names the checkpoints it breaks).
   * @default false
   */
  readonly force?: boolean;
  /**
   * The grace period of base leases (ms): a lease younger than this is an in-flight incremental
   * save's, and holds the checkpoint. @default {@link BASE_LEASE_GRACE_MS} (1 hour)
   */
  readonly leaseGraceMs?: number;
  /** Called after each file is removed, with the files removed so far and those to remove. */
  readonly onProgress?: OperationProgress;
  /** Stops between files; throws `ABORTED` (what was removed stays removed: `.metadata` first). */
  readonly signal?: AbortSignal;
}

/**
 * Removes the files of a checkpoint: its `.metadata` first — so no reader ever finds half of it —
 * then the data files it references, then leftovers of other saves (`__*.distcp`,
 * `.metadata.*.tmp`), save and base leases, and its tombstone (`.removing`) last. No check of
 * references: the caller has made them.
 *
 * @param at - where the checkpoint is.
 * @param md - its committed metadata, if any.
 * @param hasMetadata - whether a `.metadata` is there (committed or damaged).
 * @param options - progress and signal.
 */
export async function removeCheckpointFiles(
  at: Located,
  md: Metadata | undefined,
  hasMetadata: boolean,
  options: { readonly onProgress?: OperationProgress; readonly signal?: AbortSignal } = {},
): Promise<RemovalReport> {
  const { fs, root } = at;
  const { signal } = options;
  const entries = fs.list ? await fs.list(root, signal) : [];
  const referenced = new Map<string, number>();
  // Only the checkpoint's own files: a referenced base's files stay in the base.
  for (const i of md?.storageData.values() ?? [])
    if (i.baseCheckpoint === undefined)
      referenced.set(i.relativePath, Math.max(referenced.get(i.relativePath) ?? 0, i.offset + i.length));
  const leftovers = entries.filter(
    (e) =>
      !e.folder &&
      !referenced.has(e.name) &&
      (isDataFile(e.name) || isMetadataTmpFile(e.name) || isSaveLeaseFile(e.name) || isBaseLeaseFile(e.name)),
  );
  const tombstone = entries.find((e) => !e.folder && e.name === REMOVING_FILE);
  const doomed: [name: string, size: number][] = [
    ...(hasMetadata
      ? [[METADATA_FILE, entries.find((e) => e.name === METADATA_FILE)?.size ?? 0] as [string, number]]
      : []),
    ...referenced,
    ...leftovers.map((e) => [e.name, e.size] as [string, number]),
    ...(tombstone ? [[REMOVING_FILE, tombstone.size] as [string, number]] : []),
  ];
  const removed: string[] = [];
  let bytes = 0;
  for (const [done, [name, size]] of doomed.entries()) {
    throwIfAborted(signal);
    try {
      await fs.rmFile(fs.concatPath(root, name));
      if (name !== REMOVING_FILE) {
        removed.push(name); // the tombstone is the removal's own marker, not the checkpoint's
        bytes += size;
      }
    } catch (error) {
      if (!(error instanceof NotFoundError)) throw error;
    }
    options.onProgress?.(done + 1, doomed.length);
  }
  return { removed, bytes, uploads: 0 };
}

/**
 * Removes a checkpoint safely: first its tombstone (`.removing`, so that no incremental save
 * takes it as a base from then on), then — unless `force` — it refuses when a committed sibling
 * checkpoint references its files or an in-flight save holds a live lease on it (the protocol of
 * docs/format.md, "References and garbage collection"); then its `.metadata` — so no reader ever
 * finds half of it — then the data files it wrote (not the files of its own bases, which stay
 * there), then leftovers of other saves (`__*.distcp`, `.metadata.*.tmp`), save and base leases,
 * and the tombstone, so that the folder is left empty of dcpjs files.
 *
 * @param path - the checkpoint: a folder or a URI of any registered, writable backend.
 * @param options - see {@link RemoveOptions}.
 * @returns what was removed; with `force`, `broken` names the checkpoints that referenced it.
 * @throws {@link CheckpointError} `CHECKPOINT_REFERENCED` naming the referencing checkpoints (or
 * the lease holders) when `force` is not set (nothing is removed); `INVALID_ARGUMENT` when `path`
 * holds no committed checkpoint and `force` is not set, or its backend is read-only; the damaged
 * metadata's code (`MALFORMED_METADATA`…) when it does not read and `force` is not set;
 * `ABORTED`; backend errors.
 */
export async function removeCheckpoint(path: string, options: RemoveOptions = {}): Promise<RemovalReport> {
  const { signal } = options;
  const at = locate(path, { writable: true });
  let md: Metadata | undefined;
  let damaged = false;
  try {
    md = await committedMetadata(path, signal);
  } catch (error) {
    if (!isDamagedMetadataError(error)) throw error;
    if (!options.force)
      throw new CheckpointError(
        error.code,
        `${error.message} (use --force to remove the damaged checkpoint at ${path})`,
        { cause: error },
      );
    damaged = true;
  }
  if (!md && !damaged && !options.force)
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected a committed checkpoint at ${path}, found none (use --force to remove what is there)`,
    );
  let broken: string[] = [];
  if (md || damaged) {
    // Tombstone first, then leases and references: a save that leases after this is refused, one
    // that leased before is seen (docs/format.md, "References and garbage collection").
    await markRemoving(at.fs, at.root, signal);
    try {
      const { live } = await baseLeases(at.fs, at.root, options.leaseGraceMs ?? BASE_LEASE_GRACE_MS, signal);
      broken = (await referrersOf(path, signal)).map((c) => c.id);
      if (!options.force && (broken.length > 0 || live.length > 0)) {
        const who = [
          ...(broken.length > 0
            ? [`the committed checkpoints ${broken.join(", ")} reference its files`]
            : []),
          ...(live.length > 0 ? [`in-flight saves hold a lease on it (${live.join(", ")})`] : []),
        ];
        throw new CheckpointError(
          "CHECKPOINT_REFERENCED",
          `Expected no checkpoint to reference ${path}, got: ${who.join("; ")}. Nothing was removed (use --force to remove it and break them)`,
        );
      }
    } catch (error) {
      await unmarkRemoving(at.fs, at.root).catch(() => {});
      throw error;
    }
  }
  const report = await removeCheckpointFiles(at, md, md !== undefined || damaged, {
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    ...(signal ? { signal } : {}),
  });
  return broken.length > 0 ? { ...report, broken } : report;
}
