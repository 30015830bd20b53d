import { CheckpointError } from "@dcpjs/core";

/** The scheme of the checkpoint ids this package takes: `opfs://FOLDER/…`. */
export const OPFS_SCHEME = "opfs://";

/**
 * Whether a checkpoint id names an OPFS path: it starts with `opfs://` (any case).
 * @param checkpointId - a path or URI.
 */
export function isOpfsId(checkpointId: string): boolean {
  return checkpointId.slice(0, OPFS_SCHEME.length).toLowerCase() === OPFS_SCHEME;
}

/**
 * The directory names of an `opfs://` path below the origin's root: `opfs://ckpt/step-5` →
 * `["ckpt", "step-5"]`; empty segments (`//`, a trailing `/`) and `.` are dropped.
 *
 * @param path - an `opfs://` path.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` for an id without `opfs://`, and for a `..`
 * segment (OPFS has no parent of its root, and a path must not climb out of a checkpoint).
 */
export function opfsSegments(path: string): string[] {
  if (!isOpfsId(path)) {
    throw new CheckpointError("INVALID_ARGUMENT", `Expected an opfs://FOLDER/… path, got ${path}`);
  }
  const segments = path
    .slice(OPFS_SCHEME.length)
    .split("/")
    .filter((s) => s !== "" && s !== ".");
  if (segments.includes("..")) {
    throw new CheckpointError("INVALID_ARGUMENT", `Expected an opfs:// path without "..", got ${path}`);
  }
  return segments;
}

/**
 * The canonical form of an `opfs://` path: the scheme in lower case, then the segments joined by
 * `/` (`opfs://ckpt//step-5/` → `opfs://ckpt/step-5`).
 * @param path - an `opfs://` path.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` as {@link opfsSegments}.
 */
export function normalizeOpfsPath(path: string): string {
  return OPFS_SCHEME + opfsSegments(path).join("/");
}
