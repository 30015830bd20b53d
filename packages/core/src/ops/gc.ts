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
import {
  BASE_LEASE_GRACE_MS,
  baseLeases,
  checkpointName,
  isBaseLeaseFile,
  markRemoving,
  REMOVING_FILE,
  unmarkRemoving,
} from "../storage/references.js";
import { committedMetadata, locate } from "./locate.js";
import type { OperationProgress } from "./progress.js";
import { type RunCheckpoint, referenceClosure, referrersOf, runCheckpoints } from "./referrers.js";
import { type RemovalReport, removeCheckpointFiles } from "./remove.js";

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
   * never removed) and every checkpoint they reference (the bases of incremental checkpoints,
   * kept whole), remove the older ones.
   */
  readonly keepLast?: number;
  /**
   * Called after each file (or, with `keepLast`, each checkpoint) is looked at, with those looked
   * at so far and in all.
   */
  readonly onProgress?: OperationProgress;
  /**
   * The grace period of base leases (ms): a checkpoint with a base lease younger than this is
   * the base of an in-flight incremental save and is kept; older leases, and tombstones older than
   * this (of a gc or rm that died), are collected. @default {@link BASE_LEASE_GRACE_MS} (1 hour)
   */
  readonly leaseGraceMs?: number;
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

/** Whether a listed checkpoint may be removed by `keepLast` at all (before references are looked at). */
async function removable(
  fs: FileSystemBase,
  c: { readonly id: string; readonly state: string; readonly modifiedMs: number },
  now: number,
  grace: number,
  leaseGrace: number,
  signal?: AbortSignal,
): Promise<boolean> {
  const root = fs.initPath(c.id);
  return (
    // A damaged checkpoint is left for a person to look at (`dcp rm --force` removes it).
    c.state !== "damaged" &&
    (c.state === "committed" || now - c.modifiedMs >= grace) &&
    // A save writing there (a new checkpoint, or an overwrite of an old one) keeps it whole; an
    // incomplete one that has committed since it was listed is newer than the kept ones.
    (await liveLeases(fs, root, now, signal)).size === 0 &&
    // An incremental save in flight that took it as its base keeps it whole.
    (await baseLeases(fs, root, leaseGrace, signal)).live.length === 0 &&
    (c.state === "committed" || !(await committedMetadata(c.id, signal)))
  );
}

/**
 * Removes the checkpoints `doomed` (names of one run) that nothing holds once their tombstones
 * are written: tombstones first, then the live leases and the run's committed references are
 * read again; a checkpoint leased, or referenced by a committed checkpoint that stays, is kept
 * (its tombstone removed); the others are removed, each before the checkpoints it references.
 *
 * @returns the ids removed and their bytes.
 */
async function removeUnreferenced(
  run: string,
  doomed: Map<string, { readonly id: string; readonly bytes: number }>,
  leaseGrace: number,
  signal?: AbortSignal,
): Promise<{ removed: string[]; bytes: number }> {
  const { fs } = locate(run, { writable: true });
  for (const c of doomed.values()) await markRemoving(fs, fs.initPath(c.id), signal);
  const kept: string[] = [];
  let now: RunCheckpoint[] = [];
  try {
    for (const [name, c] of doomed)
      if ((await baseLeases(fs, fs.initPath(c.id), leaseGrace, signal)).live.length > 0) {
        doomed.delete(name);
        kept.push(c.id);
      }
    // Read after the tombstones and leases: a save that committed meanwhile is seen here.
    now = await runCheckpoints(run, signal);
    for (let changed = true; changed; ) {
      changed = false;
      for (const c of now) {
        if (doomed.has(checkpointName(c.id))) continue;
        for (const ref of c.references) {
          const d = doomed.get(ref);
          if (d === undefined) continue;
          doomed.delete(ref);
          kept.push(d.id);
          changed = true;
        }
      }
    }
  } catch (error) {
    for (const c of doomed.values()) await unmarkRemoving(fs, fs.initPath(c.id)).catch(() => {});
    throw error;
  } finally {
    for (const id of kept) await unmarkRemoving(fs, fs.initPath(id)).catch(() => {});
  }
  const refs = new Map(now.map((c) => [checkpointName(c.id), c]));
  const removed: string[] = [];
  let bytes = 0;
  // A checkpoint goes before those it references: one killed midway never leaves a committed
  // checkpoint whose base is gone.
  while (doomed.size > 0) {
    throwIfAborted(signal);
    const referenced = new Set([...doomed.keys()].flatMap((n) => refs.get(n)?.references ?? []));
    const name = [...doomed.keys()].find((n) => !referenced.has(n)) ?? doomed.keys().next().value!;
    const c = doomed.get(name)!;
    doomed.delete(name);
    const at = locate(c.id, { writable: true });
    await removeCheckpointFiles(at, refs.get(name)?.metadata, true, signal ? { signal } : {});
    removed.push(c.id);
    bytes += c.bytes;
  }
  return { removed, bytes };
}

/**
 * Finds and removes what crashed or superseded saves left in a checkpoint folder: data files that
 * no committed `.metadata` references (its own, or a sibling incremental checkpoint's that
 * takes it as its base), `.metadata.*.tmp` files, expired save and base leases, stale tombstones,
 * and the incomplete uploads under the prefix (S3's multipart uploads, through the backend's
 * `cleanupUploads`) — each only when older than the grace period and not of a save in flight. A
 * save in flight holds a lease (`.save.{saveTag}.lease`, written before its first data file,
 * renewed while it writes, removed after its commit): every file and upload of its tag is kept,
 * whatever the grace, while the lease is younger than {@link SAVE_LEASE_EXPIRY_MS}. The folder is
 * listed first, its leases and `.metadata` read after, so a file a save commits while gc runs is
 * seen referenced or leased, never as garbage.
 *
 * With `keepLast`, `path` is a run prefix: its newest `keepLast` committed checkpoints are kept,
 * with every checkpoint they reference (an incremental checkpoint's bases, kept whole), and the
 * older ones are removed whole — each after its tombstone (`.removing`) is written and the live
 * base leases and the run's committed references are read again (a checkpoint an incremental save
 * in flight leases, or a committed one references, is kept), each before the checkpoints it
 * references (docs/format.md, "References and garbage collection"). Every kept checkpoint folder
 * is collected too. A checkpoint a save is writing is left alone, and so is a damaged one (its
 * `.metadata` does not read).
 *
 * @param path - a checkpoint folder, or with `keepLast` a run prefix, of any registered writable backend.
 * @param options - see {@link GarbageOptions}.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when `keepLast` is not an integer ≥ 1,
 * `graceMs` or `leaseGraceMs` not a number ≥ 0, or the backend is read-only; `ABORTED`; backend
 * errors; a malformed `.metadata` (nothing is removed from that folder).
 */
export async function collectGarbage(path: string, options: GarbageOptions = {}): Promise<RemovalReport> {
  const { signal } = options;
  const grace = options.graceMs ?? 3_600_000;
  if (!(grace >= 0))
    throw new CheckpointError("INVALID_ARGUMENT", `Expected graceMs to be a number ≥ 0, got ${grace}`);
  const leaseGrace = options.leaseGraceMs ?? BASE_LEASE_GRACE_MS;
  if (!(leaseGrace >= 0))
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected leaseGraceMs to be a number ≥ 0, got ${leaseGrace}`,
    );
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
    const committed = found.filter((c) => c.state === "committed");
    const keep = referenceClosure(
      committed.slice(0, options.keepLast).map((c) => c.id),
      await runCheckpoints(path, signal),
    );
    const { keepLast: _, onProgress: __, ...inside } = options;
    const doomed = new Map<string, { id: string; bytes: number }>();
    for (const [done, c] of found.entries()) {
      throwIfAborted(signal);
      const name = checkpointName(c.id);
      if (keep.has(name) && c.state === "committed") {
        const r = await collectGarbage(c.id, inside);
        removed.push(...r.removed);
        bytes += r.bytes;
        uploads += r.uploads;
      } else if (!keep.has(name) && (await removable(fs, c, now, grace, leaseGrace, signal))) {
        if (options.dryRun) {
          removed.push(c.id);
          bytes += c.bytes;
        } else doomed.set(name, c);
      }
      options.onProgress?.(done + 1, found.length);
    }
    if (doomed.size > 0) {
      const r = await removeUnreferenced(path, doomed, leaseGrace, signal);
      removed.push(...r.removed);
      bytes += r.bytes;
    }
    return { removed, bytes, uploads };
  }
  const { backend, fs, root } = locate(path, { writable: true });
  // Order matters: files first, then leases, then .metadata (see above).
  const entries = fs.list ? await fs.list(root, signal) : [];
  const leased = await liveLeases(fs, root, now, signal);
  const md = await committedMetadata(path, signal);
  const referenced = new Set(
    [...(md?.storageData.values() ?? [])]
      .filter((i) => i.baseCheckpoint === undefined)
      .map((i) => i.relativePath),
  );
  const inFlight = (name: string) => {
    const tag = saveTagOf(name);
    return tag !== undefined && leased.has(tag);
  };
  const candidates = entries.filter((e) => {
    if (e.folder || referenced.has(e.name)) return false;
    if (isBaseLeaseFile(e.name) || e.name === REMOVING_FILE) return now - e.modifiedMs >= leaseGrace;
    const lease = isSaveLeaseFile(e.name);
    if (!(lease || isDataFile(e.name) || isMetadataTmpFile(e.name)) || inFlight(e.name)) return false;
    // An expired lease is a dead save's; other files may still be written by a save without one.
    return lease ? now - e.modifiedMs >= SAVE_LEASE_EXPIRY_MS : !(grace > 0 && now - e.modifiedMs < grace);
  });
  // A data file this checkpoint's metadata does not name may still be one a sibling incremental
  // checkpoint references (its base was saved over): looked for only when there is such a file.
  if (candidates.some((e) => isDataFile(e.name)))
    for (const c of await referrersOf(path, signal))
      for (const i of c.metadata.storageData.values())
        if (i.baseCheckpoint === checkpointName(path)) referenced.add(i.relativePath);
  for (const [done, e] of entries.entries()) {
    throwIfAborted(signal);
    options.onProgress?.(done, entries.length);
    if (!candidates.includes(e) || referenced.has(e.name)) continue;
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
