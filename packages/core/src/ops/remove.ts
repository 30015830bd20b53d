import { isDamagedMetadataError } from "../checkpoints.js";
import { CheckpointError, NotFoundError, throwIfAborted } from "../errors.js";
import type { Metadata } from "../plan/metadata.js";
import { isDataFile, isMetadataTmpFile, isSaveLeaseFile, METADATA_FILE } from "../storage/layout.js";
import { committedMetadata, locate } from "./locate.js";
import type { OperationProgress } from "./progress.js";

/** What {@link removeCheckpoint} and `collectGarbage` removed (or, dry, would remove). */
export interface RemovalReport {
  /** The files removed (names in the checkpoint), or with `keepLast` the checkpoints removed whole (ids). */
  readonly removed: string[];
  /** Bytes removed (of the files as listed, or of the checkpoints' data files). */
  readonly bytes: number;
  /** Incomplete uploads aborted (S3's multipart uploads). */
  readonly uploads: number;
}

/** Options of {@link removeCheckpoint}. */
export interface RemoveOptions {
  /**
   * Remove what is there even without a committed checkpoint, or with a damaged one (its metadata
   * does not read: removed with every data file). @default false
   */
  readonly force?: boolean;
  /** Called after each file is removed, with the files removed so far and those to remove. */
  readonly onProgress?: OperationProgress;
  /** Stops between files; throws `ABORTED` (what was removed stays removed: `.metadata` first). */
  readonly signal?: AbortSignal;
}

/**
 * Removes a checkpoint safely: its `.metadata` first — so no reader ever finds half of it — then
 * the data files it references, then leftovers of other saves (`__*.distcp`, `.metadata.*.tmp`)
 * and save leases (`.save.*.lease`), so that the folder is left empty of dcpjs files.
 *
 * @param path - the checkpoint: a folder or a URI of any registered, writable backend.
 * @param options - see {@link RemoveOptions}.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when `path` holds no committed checkpoint and
 * `force` is not set, or its backend is read-only; the damaged metadata's code
 * (`MALFORMED_METADATA`…) when it does not read and `force` is not set; `ABORTED`; backend errors.
 */
export async function removeCheckpoint(path: string, options: RemoveOptions = {}): Promise<RemovalReport> {
  const { signal } = options;
  const { fs, root } = locate(path, { writable: true });
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
  const entries = fs.list ? await fs.list(root, signal) : [];
  const referenced = new Map<string, number>();
  for (const i of md?.storageData.values() ?? [])
    referenced.set(i.relativePath, Math.max(referenced.get(i.relativePath) ?? 0, i.offset + i.length));
  const leftovers = entries.filter(
    (e) =>
      !e.folder &&
      !referenced.has(e.name) &&
      (isDataFile(e.name) || isMetadataTmpFile(e.name) || isSaveLeaseFile(e.name)),
  );
  const doomed: [name: string, size: number][] = [
    ...(md || damaged
      ? [[METADATA_FILE, entries.find((e) => e.name === METADATA_FILE)?.size ?? 0] as [string, number]]
      : []),
    ...referenced,
    ...leftovers.map((e) => [e.name, e.size] as [string, number]),
  ];
  const removed: string[] = [];
  let bytes = 0;
  for (const [done, [name, size]] of doomed.entries()) {
    throwIfAborted(signal);
    try {
      await fs.rmFile(fs.concatPath(root, name));
      removed.push(name);
      bytes += size;
    } catch (error) {
      if (!(error instanceof NotFoundError)) throw error;
    }
    options.onProgress?.(done + 1, doomed.length);
  }
  return { removed, bytes, uploads: 0 };
}
