import { listCheckpoints } from "../checkpoints.js";
import { CheckpointError, NotFoundError, throwIfAborted } from "../errors.js";
import type { FileSystemBase } from "../storage/filesystem-base.js";
import {
  isDataFile,
  isMetadataTmpFile,
  isSaveLeaseFile,
  SAVE_LEASE_EXPIRY_MS,
  saveTagOf,
} from "../storage/layout.js";
import { committedMetadata, locate } from "./locate.js";
import type { OperationProgress } from "./progress.js";
import { type RemovalReport, removeCheckpoint } from "./remove.js";

/** Options of {@link collectGarbage}. */
export interface GarbageOptions {
  /** Only report. @default false */
  readonly dryRun?: boolean;
  /**
   * Leave files younger than this alone (ms): leftovers of a save whose lease is gone. Files of a
   * save in flight are kept whatever their age, by its lease ({@link SAVE_LEASE_EXPIRY_MS}).
   * @default 3600000 (1 hour)
   */
  readonly graceMs?: number;
  /**
   * Treat `path` as a run prefix: keep its newest N committed checkpoints (N ≥ 1: the newest is
   * never removed), remove the older ones.
   */
  readonly keepLast?: number;
  /**
   * Called after each file (or, with `keepLast`, each checkpoint) is looked at, with those looked
   * at so far and in all.
   */
  readonly onProgress?: OperationProgress;
  /** Stops between files and checkpoints; throws `ABORTED` (what was removed stays removed). */
  readonly signal?: AbortSignal;
}

/**
 * The save tags whose lease is live in a folder: listed after the files they protect were, so that
 * a file seen there whose save holds a lease is seen with it (a save writes its lease before its
 * first data file and removes it only after its commit or failure).
 */
async function liveLeases(
  fs: FileSystemBase,
  root: string,
  now: number,
  signal?: AbortSignal,
): Promise<Set<string>> {
  const live = new Set<string>();
  for (const e of fs.list ? await fs.list(root, signal) : []) {
    const tag = isSaveLeaseFile(e.name) ? saveTagOf(e.name) : undefined;
    if (tag && now - e.modifiedMs < SAVE_LEASE_EXPIRY_MS) live.add(tag);
  }
  return live;
}

/**
 * Finds and removes what crashed or superseded saves left in a checkpoint folder: data files that
 * no committed `.metadata` references, `.metadata.*.tmp` files, expired save leases, and the
 * incomplete uploads under the prefix (S3's multipart uploads, through the backend's
 * `cleanupUploads`) — each only when older than the grace period and not of a save in flight. A
 * save in flight holds a lease (`.save.{saveTag}.lease`, written before its first data file,
 * renewed while it writes, removed after its commit): every file and upload of its tag is kept,
 * whatever the grace, while the lease is younger than {@link SAVE_LEASE_EXPIRY_MS}. The folder is
 * listed first, its leases and `.metadata` read after, so a file a save commits while gc runs is
 * seen referenced or leased, never as garbage. With `keepLast`, `path` is a run prefix whose older
 * committed checkpoints are removed whole (and every checkpoint folder is collected, its expired
 * leases too); a checkpoint a save is writing is left alone, and so is a damaged one (its
 * `.metadata` does not read).
 *
 * @param path - a checkpoint folder, or with `keepLast` a run prefix, of any registered writable backend.
 * @param options - see {@link GarbageOptions}.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when `keepLast` is not an integer ≥ 1,
 * `graceMs` not a number ≥ 0, or the backend is read-only; `ABORTED`; backend errors; a malformed
 * `.metadata` (nothing is removed from that folder).
 */
export async function collectGarbage(path: string, options: GarbageOptions = {}): Promise<RemovalReport> {
  const { signal } = options;
  const grace = options.graceMs ?? 3_600_000;
  if (!(grace >= 0))
    throw new CheckpointError("INVALID_ARGUMENT", `Expected graceMs to be a number ≥ 0, got ${grace}`);
  const now = Date.now();
  const removed: string[] = [];
  let bytes = 0;
  let uploads = 0;
  if (options.keepLast !== undefined) {
    if (!Number.isInteger(options.keepLast) || options.keepLast < 1)
      throw new CheckpointError(
        "INVALID_ARGUMENT",
        `Expected keepLast to be an integer ≥ 1 (the newest committed checkpoint is always kept), got ${options.keepLast}`,
      );
    const { fs } = locate(path, { writable: true });
    const found = await listCheckpoints(path, { includeIncomplete: true, ...(signal ? { signal } : {}) });
    const keep = new Set(
      found
        .filter((c) => c.state === "committed")
        .slice(0, options.keepLast)
        .map((c) => c.id),
    );
    const { keepLast: _, onProgress: __, ...inside } = options;
    for (const [done, c] of found.entries()) {
      throwIfAborted(signal);
      if (keep.has(c.id)) {
        const r = await collectGarbage(c.id, inside);
        removed.push(...r.removed);
        bytes += r.bytes;
        uploads += r.uploads;
      } else if (
        // A damaged checkpoint is left for a person to look at (`dcp rm --force` removes it).
        c.state !== "damaged" &&
        (c.state === "committed" || now - c.modifiedMs >= grace) &&
        // A save writing there (a new checkpoint, or an overwrite of an old one) keeps it whole; an
        // incomplete one that has committed since it was listed is newer than the kept ones.
        (await liveLeases(fs, fs.initPath(c.id), now, signal)).size === 0 &&
        (c.state === "committed" || !(await committedMetadata(c.id, signal)))
      ) {
        if (!options.dryRun) await removeCheckpoint(c.id, { force: true, ...(signal ? { signal } : {}) });
        removed.push(c.id);
        bytes += c.bytes;
      }
      options.onProgress?.(done + 1, found.length);
    }
    return { removed, bytes, uploads };
  }
  const { backend, fs, root } = locate(path, { writable: true });
  // Order matters: files first, then leases, then .metadata (see above).
  const entries = fs.list ? await fs.list(root, signal) : [];
  const leased = await liveLeases(fs, root, now, signal);
  const md = await committedMetadata(path, signal);
  const referenced = new Set([...(md?.storageData.values() ?? [])].map((i) => i.relativePath));
  const inFlight = (name: string) => {
    const tag = saveTagOf(name);
    return tag !== undefined && leased.has(tag);
  };
  for (const [done, e] of entries.entries()) {
    throwIfAborted(signal);
    options.onProgress?.(done, entries.length);
    if (e.folder || referenced.has(e.name)) continue;
    const lease = isSaveLeaseFile(e.name);
    if (!(lease || isDataFile(e.name) || isMetadataTmpFile(e.name)) || inFlight(e.name)) continue;
    // An expired lease is a dead save's; other files may still be written by a save without one.
    if (lease ? now - e.modifiedMs < SAVE_LEASE_EXPIRY_MS : grace > 0 && now - e.modifiedMs < grace) continue;
    if (!options.dryRun) {
      try {
        await fs.rmFile(fs.concatPath(root, e.name));
      } catch (error) {
        if (error instanceof NotFoundError) continue; // removed meanwhile (a commit removing what it replaced)
        throw error;
      }
    }
    removed.push(e.name);
    bytes += e.size;
  }
  if (backend.cleanupUploads && !options.dryRun)
    uploads = (
      await backend.cleanupUploads(path, {
        startedBefore: new Date(now - grace),
        // Leases read again after each page of uploads is listed: a save leases before it uploads.
        keep: async (keys) => {
          const live = await liveLeases(fs, root, Date.now(), signal);
          return new Set(keys.filter((k) => live.has(saveTagOf(k) ?? "")));
        },
        ...(signal ? { signal } : {}),
      })
    ).length;
  options.onProgress?.(entries.length, entries.length);
  return { removed, bytes, uploads };
}
