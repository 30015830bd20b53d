import { CheckpointError, type CheckpointErrorCode, throwIfAborted } from "./errors.js";
import type { Metadata } from "./plan/metadata.js";
import type { FileEntry, FileSystemBase } from "./storage/filesystem-base.js";
import { isDataFile, METADATA_FILE } from "./storage/layout.js";
import { createStorageReader } from "./storage/registry.js";
import { isFileSystemBacked } from "./storage/storage.js";

/** One checkpoint found by {@link listCheckpoints}. */
export interface CheckpointListing {
  /** Its path or URI, a checkpoint id `load` takes: the root as given, joined with the folders below it. */
  readonly id: string;
  /**
   * `committed` (a `.metadata` — or PyTorch's per-rank `__N.metadata`, or a safetensors folder —
   * is there and reads: it loads), `damaged` (one is there but does not read: see
   * {@link CheckpointListing.error}) or `incomplete` (data files without one: a save killed, or
   * still running).
   */
  readonly state: "committed" | "damaged" | "incomplete";
  /** Why a `damaged` checkpoint's metadata does not read: the error's code and message. */
  readonly error?: { readonly code: CheckpointErrorCode; readonly message: string };
  /** `dcpjs`, `torch` or `safetensors` (committed only). */
  readonly format?: string;
  /** Ranks that wrote data files, from their names (`__{rank}_`). */
  readonly ranks: readonly number[];
  /** Entries of its state dict (fqns); 0 when incomplete or damaged. */
  readonly entries: number;
  /** Bytes of its data files (as referenced, for a committed checkpoint; as found, otherwise). */
  readonly bytes: number;
  /**
   * When it was committed (its metadata file's time), or for an incomplete one when a file was
   * last written, in ms since the epoch. S3 gives whole seconds.
   */
  readonly modifiedMs: number;
  /** The step number in its name (the last run of digits in its folder's name, `step-000010` → 10), if any. */
  readonly step?: number;
}

/** Options of {@link listCheckpoints}. */
export interface ListCheckpointsOptions {
  /**
   * Search every folder below `root`, down to {@link ListCheckpointsOptions.maxDepth} levels
   * (`runs/b/ckpt/step-5` is 3 levels below `runs`), rather than `root` and its direct
   * sub-folders only. The folders of a checkpoint are not searched. @default false
   */
  readonly recursive?: boolean;
  /** With `recursive`: the deepest folder level searched below `root` (≥ 1). @default 4 ({@link DEFAULT_LIST_DEPTH}) */
  readonly maxDepth?: number;
  /** Also list incomplete checkpoints (data files without a committed metadata file). @default false */
  readonly includeIncomplete?: boolean;
  /** Called with each folder searched, `root` first (e.g. to say where nothing was found). */
  readonly onFolder?: (path: string) => void;
  /** Aborts the search. */
  readonly signal?: AbortSignal;
}

/** {@link ListCheckpointsOptions.maxDepth}'s default. */
export const DEFAULT_LIST_DEPTH = 4;

/** The step number in the last segment of a checkpoint id, if it has digits. */
function stepOf(id: string): number | undefined {
  const name = id.replace(/\/+$/, "").split("/").at(-1) ?? "";
  const digits = /(\d+)(?!.*\d)/.exec(name)?.[1];
  return digits === undefined ? undefined : Number(digits);
}

/** Newest first: commit time, then the step number in the name, then the id. */
function newestFirst(a: CheckpointListing, b: CheckpointListing): number {
  return (
    b.modifiedMs - a.modifiedMs ||
    (b.step ?? Number.NEGATIVE_INFINITY) - (a.step ?? Number.NEGATIVE_INFINITY) ||
    (a.id < b.id ? 1 : a.id > b.id ? -1 : 0)
  );
}

/** The files that commit a checkpoint: `.metadata`, `__{rank}.metadata`, a safetensors folder's. */
function commitFiles(files: readonly FileEntry[]): FileEntry[] {
  const metadata = files.filter((f) => !f.folder && f.name === METADATA_FILE);
  if (metadata.length > 0) return metadata;
  const perRank = files.filter((f) => !f.folder && /^__\d+\.metadata$/.test(f.name));
  if (perRank.length > 0) return perRank;
  return files.filter((f) => !f.folder && f.name.endsWith(".safetensors"));
}

/**
 * Codes that say a metadata file's content is damaged (it will not read, however often it is
 * read again) — unlike a backend's failure (`IO_ERROR`, `ACCESS_DENIED`, `TIMEOUT`…), which is
 * thrown: skipping a checkpoint because the storage failed once would resume from an older one.
 */
const DAMAGE_CODES: ReadonlySet<CheckpointErrorCode> = new Set([
  "MALFORMED_METADATA",
  "MALFORMED_DATA",
  "UNSAFE_PATH",
  "TRUNCATED",
  "CHECKSUM_MISMATCH",
]);

/**
 * Whether an error reading a checkpoint's metadata says the file itself is damaged
 * (`MALFORMED_METADATA`, `UNSAFE_PATH`, `TRUNCATED`, `CHECKSUM_MISMATCH`, `MALFORMED_DATA`) rather
 * than that the storage failed.
 *
 * @param error - what reading the metadata threw.
 */
export function isDamagedMetadataError(error: unknown): error is CheckpointError {
  return error instanceof CheckpointError && DAMAGE_CODES.has(error.code);
}

/** The committed metadata of `id`, undefined when it is not committed, or the error that says it is damaged. */
async function committedMetadata(
  id: string,
  signal: AbortSignal | undefined,
): Promise<Metadata | CheckpointError | undefined> {
  try {
    return await (await createStorageReader(id)).readMetadata(signal);
  } catch (error) {
    if (error instanceof CheckpointError && error.code === "INCOMPLETE_CHECKPOINT") return undefined;
    if (isDamagedMetadataError(error)) return error;
    throw error;
  }
}

/** The ranks that wrote data files, from their names (`__{rank}_`), ascending. */
function ranksOf(paths: readonly string[]): number[] {
  return [
    ...new Set(paths.map((p) => Number(/(?:^|\/)__(\d+)_/.exec(p)?.[1])).filter((r) => Number.isInteger(r))),
  ].sort((a, b) => a - b);
}

/** What the folder `id` holds as a checkpoint, or undefined when it holds none. */
async function describeFolder(
  id: string,
  files: readonly FileEntry[],
  signal: AbortSignal | undefined,
): Promise<CheckpointListing | undefined> {
  const commit = commitFiles(files);
  const read = commit.length > 0 ? await committedMetadata(id, signal) : undefined;
  const data = files.filter((f) => !f.folder && isDataFile(f.name));
  const step = stepOf(id);
  if (read instanceof CheckpointError) {
    return {
      id,
      state: "damaged",
      error: { code: read.code, message: read.message },
      ranks: ranksOf(data.map((f) => f.name)),
      entries: 0,
      bytes: data.reduce((n, f) => n + f.size, 0),
      modifiedMs: Math.max(0, ...commit.map((f) => f.modifiedMs)),
      ...(step !== undefined ? { step } : {}),
    };
  }
  const md = read;
  if (!md && data.length === 0) return undefined;
  const infos = md ? [...md.storageData.values()] : [];
  const paths = md ? [...new Set(infos.map((i) => i.relativePath))] : data.map((f) => f.name);
  const ranks = ranksOf(paths);
  return {
    id,
    state: md ? "committed" : "incomplete",
    ...(md ? { format: md.storageMeta.format ?? "dcpjs" } : {}),
    ranks,
    entries: md ? md.stateDictMetadata.size : 0,
    bytes: md ? infos.reduce((n, i) => n + i.length, 0) : data.reduce((n, f) => n + f.size, 0),
    modifiedMs: Math.max(0, ...(md ? commit : files).map((f) => f.modifiedMs)),
    ...(step !== undefined ? { step } : {}),
  };
}

/** The file system of the backend registered for `root` (local folders, `s3://` once `@dcpjs/s3` is imported, …). */
async function listingFileSystem(
  root: string,
): Promise<FileSystemBase & Required<Pick<FileSystemBase, "list">>> {
  const reader = await createStorageReader(root);
  const fs = isFileSystemBacked(reader) ? reader.fs : undefined;
  if (!fs?.list)
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected a storage backend that can list folders for ${root}, got one without (${reader.constructor.name})`,
    );
  return fs as FileSystemBase & Required<Pick<FileSystemBase, "list">>;
}

/**
 * The checkpoints at and under `root` — a folder, or a prefix of any registered backend
 * (`s3://bucket/run` once `@dcpjs/s3` is imported) — newest first: by commit time (the metadata
 * file's), then by the step number in the name (S3's times have 1 s resolution), then by id.
 * Committed checkpoints only unless `includeIncomplete`; a damaged one — its metadata file is
 * there but does not read (`MALFORMED_METADATA`, `CHECKSUM_MISMATCH`…) — is listed as `damaged`
 * with its error's code, so that one damaged old checkpoint neither hides the others nor stops a
 * resume. By default `root` and its direct sub-folders are looked at (a run's folder of step
 * checkpoints); `recursive` searches deeper. Each committed one's metadata is read (one read per
 * checkpoint).
 *
 * @param root - a folder or a backend's prefix.
 * @param options - see {@link ListCheckpointsOptions}.
 * @returns the checkpoints found, newest first; `[]` when none (or `root` does not exist).
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` for a `maxDepth` that is not an integer ≥ 1,
 * or a backend that cannot list; backend errors (a storage failure is thrown, never taken for a
 * damaged checkpoint); `ABORTED` when `signal` aborts.
 */
export async function listCheckpoints(
  root: string,
  options: ListCheckpointsOptions = {},
): Promise<CheckpointListing[]> {
  const { signal } = options;
  const maxDepth = options.recursive ? (options.maxDepth ?? DEFAULT_LIST_DEPTH) : 1;
  if (!Number.isSafeInteger(maxDepth) || maxDepth < 1)
    throw new CheckpointError("INVALID_ARGUMENT", `Expected maxDepth to be an integer >= 1, got ${maxDepth}`);
  const fs = await listingFileSystem(root);
  const found: CheckpointListing[] = [];
  const search = async (id: string, depth: number): Promise<void> => {
    throwIfAborted(signal);
    options.onFolder?.(id);
    const files = await fs.list(fs.initPath(id), signal);
    const here = await describeFolder(id, files, signal);
    if (here) found.push(here);
    if (here || depth >= maxDepth) return; // a checkpoint's own folders are its data, not checkpoints
    for (const f of files)
      if (f.folder && !f.name.startsWith(".")) await search(fs.concatPath(id, f.name), depth + 1);
  };
  await search(root, 0);
  return found
    .filter((c) => options.includeIncomplete === true || c.state !== "incomplete")
    .sort(newestFirst);
}

/**
 * The newest committed checkpoint at or under `root` — what a training program resumes from
 * after a crash: a save killed before its commit is never returned, nor a damaged checkpoint
 * (its metadata does not read; the next newest is returned). Ordered as
 * {@link listCheckpoints} orders them (commit time, then the step number in the name).
 *
 * @param root - a folder or a backend's prefix (e.g. a run's folder of `step-N` checkpoints).
 * @param options - `recursive`, `maxDepth`, `signal` as {@link listCheckpoints}'s.
 * @returns its checkpoint id (for `load`'s `checkpointId`), or undefined when there is none.
 * @throws as {@link listCheckpoints}.
 */
export async function latestCheckpoint(
  root: string,
  options: Pick<ListCheckpointsOptions, "recursive" | "maxDepth" | "signal"> = {},
): Promise<string | undefined> {
  return (await listCheckpoints(root, options)).find((c) => c.state === "committed")?.id;
}
