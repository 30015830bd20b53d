import { CheckpointError, NotFoundError, throwIfAborted } from "../errors.js";
import type { Metadata } from "../plan/metadata.js";
import type { FileSystemBase } from "./filesystem-base.js";
import { METADATA_FILE } from "./layout.js";
import { writeWholeFile } from "./write-whole-file.js";

/**
 * The sibling checkpoints whose files a checkpoint's items reference (an incremental checkpoint's
 * bases), sorted, each once; empty for a self-contained checkpoint.
 *
 * @param metadata - the checkpoint's metadata.
 */
export function referencedCheckpoints(metadata: Metadata): string[] {
  const names = new Set<string>();
  for (const info of metadata.storageData.values())
    if (info.baseCheckpoint !== undefined) names.add(info.baseCheckpoint);
  return [...names].sort();
}

/**
 * The id of a checkpoint's sibling: the same parent folder or prefix, another last segment
 * (`s3://b/run/step-110` and `step-100` → `s3://b/run/step-100`).
 *
 * @param checkpointId - a checkpoint id (a path or a URI); trailing slashes are ignored.
 * @param name - the sibling's name: one path segment, not `.` or `..`.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when `name` is not one segment, or the id has no parent.
 */
export function siblingCheckpointId(checkpointId: string, name: string): string {
  if (name === "" || name === "." || name === ".." || /[/\\\0]/.test(name)) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected a sibling checkpoint's name (one path segment), got ${JSON.stringify(name)}`,
    );
  }
  const id = checkpointId.replace(/[/\\]+$/, "");
  const cut = Math.max(id.lastIndexOf("/"), id.lastIndexOf("\\"));
  const scheme = /^[a-z][a-z0-9+.-]*:\/\/[^/]*$/i;
  if (cut < 0) return name;
  const parent = id.slice(0, cut);
  if (scheme.test(id) || parent.endsWith(":/") || parent.endsWith(":")) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected a checkpoint id with a parent folder or prefix, got ${checkpointId}`,
    );
  }
  return `${parent}/${name}`;
}

/** The name of a checkpoint id's last segment (`s3://b/run/step-110` → `step-110`). */
export function checkpointName(checkpointId: string): string {
  const id = checkpointId.replace(/[/\\]+$/, "");
  return id.slice(Math.max(id.lastIndexOf("/"), id.lastIndexOf("\\")) + 1);
}

/**
 * The id of the folder or prefix a checkpoint lies in — its run (`s3://b/run/step-110` →
 * `s3://b/run`), where its siblings (its bases and the checkpoints that reference it) lie.
 *
 * @param checkpointId - a checkpoint id (a path or a URI); trailing slashes are ignored.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when the id has no parent, as {@link siblingCheckpointId}.
 */
export function parentCheckpointFolder(checkpointId: string): string {
  const sibling = siblingCheckpointId(checkpointId, "x");
  return sibling === "x" ? "." : sibling.slice(0, -2);
}

/**
 * How long a base lease stays live without being renewed (ms) — the grace period of the protocol
 * between incremental saves and `gc`/`rm` (docs/format.md, "References and garbage collection"):
 * a save's {@link BaseLease.confirm} renews its lease, and must run less than this before its commit;
 * gc and rm keep every checkpoint with a lease younger than this. One hour, as a save lease's
 * expiry: a save that died leaves a lease that holds its base for at most that long.
 */
export const BASE_LEASE_GRACE_MS = 3_600_000;

/** The tombstone `gc` and `rm` write in a checkpoint before they decide to remove it (`.removing`). */
export const REMOVING_FILE = ".removing";

/**
 * The lease an in-flight incremental save keeps in its base (`.base.{holderId}.lease`).
 * @param holderId - the save's unique id: 1–64 of `[A-Za-z0-9_-]`.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` for another holder id.
 */
export function baseLeaseFile(holderId: string): string {
  if (!/^[\w-]{1,64}$/.test(holderId))
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected a lease holder id of 1–64 letters, digits, _ or -, got ${JSON.stringify(holderId)}`,
    );
  return `.base.${holderId}.lease`;
}

/** Whether a name is a base lease (`.base.{holderId}.lease`, see {@link baseLeaseFile}). */
export function isBaseLeaseFile(name: string): boolean {
  return /^\.base\.[\w-]{1,64}\.lease$/.test(name);
}

/** The lease holders ({@link baseLeaseFile}) of a checkpoint folder: live (younger than the grace) and expired. */
export interface BaseLeases {
  readonly live: string[];
  readonly expired: string[];
}

/**
 * The base leases in a checkpoint folder, by age against `graceMs`.
 *
 * @param fs - the folder's file system (with `list`; none is found without it).
 * @param root - the folder's path on `fs`.
 * @param graceMs - the grace period (ms), {@link BASE_LEASE_GRACE_MS} by default.
 * @param signal - aborts the listing.
 */
export async function baseLeases(
  fs: FileSystemBase,
  root: string,
  graceMs: number = BASE_LEASE_GRACE_MS,
  signal?: AbortSignal,
): Promise<BaseLeases> {
  const now = Date.now();
  const live: string[] = [];
  const expired: string[] = [];
  for (const e of fs.list ? await fs.list(root, signal) : []) {
    if (e.folder || !isBaseLeaseFile(e.name)) continue;
    (now - e.modifiedMs < graceMs ? live : expired).push(e.name.slice(".base.".length, -".lease".length));
  }
  return { live, expired };
}

/** Writes a small file whole (a lease or a tombstone): when and by whom, as JSON. */
async function writeMarker(fs: FileSystemBase, path: string, what: object, signal?: AbortSignal) {
  const bytes = new TextEncoder().encode(JSON.stringify({ ...what, writtenAt: new Date().toISOString() }));
  await writeWholeFile(fs, path, [bytes], { sync: false, ...(signal ? { signal } : {}) });
}

/** Removes a file; a missing one is no error. */
async function removeIfThere(fs: FileSystemBase, path: string): Promise<void> {
  try {
    await fs.rmFile(path);
  } catch (error) {
    if (!(error instanceof NotFoundError)) throw error;
  }
}

/**
 * Writes the tombstone ({@link REMOVING_FILE}) in a checkpoint that `gc` or `rm` is about to
 * remove: from then on a save can neither take a lease on it nor commit against it.
 *
 * @param fs - the checkpoint's file system.
 * @param root - the checkpoint's path on `fs`.
 * @param signal - aborts the write.
 */
export async function markRemoving(fs: FileSystemBase, root: string, signal?: AbortSignal): Promise<void> {
  await writeMarker(fs, fs.concatPath(root, REMOVING_FILE), { removing: true }, signal);
}

/**
 * Removes a checkpoint's tombstone (the checkpoint is kept after all, or it is gone). Never throws
 * for a missing one.
 *
 * @param fs - the checkpoint's file system.
 * @param root - the checkpoint's path on `fs`.
 */
export async function unmarkRemoving(fs: FileSystemBase, root: string): Promise<void> {
  await removeIfThere(fs, fs.concatPath(root, REMOVING_FILE));
}

/** A hold an in-flight incremental save keeps on its base, so that gc does not remove it meanwhile. */
export interface BaseLease {
  /**
   * Checks, just before the commit, that the base is still there and not being removed: the
   * lease is still there, is renewed, and then the base has no tombstone and still has its
   * `.metadata`. Must run less than the grace period ({@link BASE_LEASE_GRACE_MS}) before the commit.
   *
   * @throws {@link CheckpointError} `BASE_REMOVED` when the base is gone or being removed (commit
   * nothing: the references would break); the backend's errors.
   */
  confirm(signal?: AbortSignal): Promise<void>;
  /** Drops the hold (after the commit, or after the save failed). Never throws. */
  release(): Promise<void>;
}

/** The error of a base that is being removed or is gone: `BASE_REMOVED`, naming it. */
function baseRemoved(baseId: string, what: string): CheckpointError {
  return new CheckpointError(
    "BASE_REMOVED",
    `Expected the base checkpoint ${baseId} to stay while this save references it; ${what}: nothing is committed against it`,
  );
}

/** Throws `BASE_REMOVED` when the base has a tombstone or no `.metadata`. */
async function checkBase(fs: FileSystemBase, root: string, baseId: string): Promise<void> {
  if (await fs.exists(fs.concatPath(root, REMOVING_FILE)))
    throw baseRemoved(baseId, `it is being removed (${REMOVING_FILE} is there: dcp gc or rm)`);
  if (!(await fs.exists(fs.concatPath(root, METADATA_FILE))))
    throw baseRemoved(baseId, `its ${METADATA_FILE} is gone`);
}

/**
 * Takes a lease on a base checkpoint for an in-flight save (before the save reads the base's
 * metadata): writes `<base>/.base.{holderId}.lease`, then checks that the base is not being
 * removed. The protocol with gc and rm is documented in docs/format.md ("References and garbage
 * collection"): gc and rm write a tombstone first, then look for live leases and committed
 * references, and remove nothing leased or referenced; a save confirms (renewing its lease) just
 * before its commit and releases after.
 *
 * @param fs - the base's file system.
 * @param baseId - the base checkpoint's id.
 * @param holderId - the save's unique id (1–64 of `[A-Za-z0-9_-]`).
 * @param signal - aborts the lease's writes.
 * @throws {@link CheckpointError} `NOT_FOUND` naming the base when it has no `.metadata` (nothing
 * is written); `BASE_REMOVED` when it is being removed, or loses its `.metadata` meanwhile (no
 * lease is left); `INVALID_ARGUMENT` for a bad holder id; the backend's errors.
 */
export async function leaseBase(
  fs: FileSystemBase,
  baseId: string,
  holderId: string,
  signal?: AbortSignal,
): Promise<BaseLease> {
  const root = fs.initPath(baseId);
  const lease = fs.concatPath(root, baseLeaseFile(holderId));
  const renew = () => writeMarker(fs, lease, { holder: holderId }, signal);
  // Nothing is written where no checkpoint is (a mistyped base must not become a folder).
  if (!(await fs.exists(fs.concatPath(root, METADATA_FILE))))
    throw new CheckpointError(
      "NOT_FOUND",
      `Expected a committed base checkpoint at ${baseId} (its ${METADATA_FILE}), found none`,
    );
  await renew();
  try {
    await checkBase(fs, root, baseId);
  } catch (error) {
    await removeIfThere(fs, lease).catch(() => {});
    throw error;
  }
  return {
    confirm: async (confirmSignal?: AbortSignal) => {
      throwIfAborted(confirmSignal);
      // A lease that is gone was collected as expired, or went with its base: the base may have changed.
      if (!(await fs.exists(lease))) throw baseRemoved(baseId, "this save's lease on it is gone (expired)");
      await renew();
      await checkBase(fs, root, baseId);
    },
    release: async () => {
      await removeIfThere(fs, lease).catch(() => {});
    },
  };
}

/**
 * Of the files a save is about to remove from the checkpoint it replaced (an overwrite), those
 * something still needs: every one while an in-flight incremental save holds a live lease on the
 * checkpoint (it may reference any of them), else those that a committed sibling references. An
 * overwrite therefore never breaks a checkpoint built on the one it replaces; the kept files are
 * `dcp gc`'s once nothing references them.
 *
 * @param fs - the checkpoint's file system (without `list`, nothing can reference it: none is kept).
 * @param root - the checkpoint's path on `fs`.
 * @param files - the replaced checkpoint's own data files, relative to `root`.
 * @param decode - decodes a sibling's `.metadata` (a sibling that does not decode references nothing).
 * @param signal - aborts the listing and reads.
 */
export async function filesStillReferenced(
  fs: FileSystemBase,
  root: string,
  files: ReadonlySet<string>,
  decode: (path: string) => Promise<Metadata>,
  signal?: AbortSignal,
): Promise<Set<string>> {
  if (files.size === 0 || !fs.list) return new Set();
  if ((await baseLeases(fs, root, BASE_LEASE_GRACE_MS, signal)).live.length > 0) return new Set(files);
  let parent: string;
  try {
    parent = parentCheckpointFolder(root);
  } catch {
    return new Set(); // a bucket's root has no siblings
  }
  const name = checkpointName(root);
  const kept = new Set<string>();
  for (const entry of await fs.list(parent, signal)) {
    if (!entry.folder || entry.name === name) continue;
    let metadata: Metadata;
    try {
      metadata = await decode(fs.concatPath(fs.concatPath(parent, entry.name), METADATA_FILE));
    } catch {
      throwIfAborted(signal);
      continue;
    }
    for (const info of metadata.storageData.values())
      if (info.baseCheckpoint === name && files.has(info.relativePath)) kept.add(info.relativePath);
  }
  return kept;
}
