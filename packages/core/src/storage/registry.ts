import { LocalFileSystem } from "#platform";
import { CheckpointError } from "../errors.js";
import type { FileSystemBase } from "./filesystem-base.js";
import { FileSystemReader } from "./filesystem-reader.js";
import { FileSystemWriter } from "./filesystem-writer.js";
import type { ProgressCallback } from "./progress.js";
import type { StorageReader, StorageWriter } from "./storage.js";

/** Options `save`, `load` and the operations pass to whichever backend a checkpoint id resolves to. */
export interface StorageRouterOptions {
  /** Files per rank written (and read) concurrently. @default 1 for writers, 4 for readers */
  readonly threadCount?: number;
  /** Writers only: replace an existing checkpoint. @default true */
  readonly overwrite?: boolean;
  /** Called after each item is written or read. */
  readonly onProgress?: ProgressCallback;
  /**
   * Writers only: the on-disk format (`dcpjs`, `torch`, …; see `FileSystemWriterOptions.format`).
   * @default "dcpjs"
   */
  readonly format?: "dcpjs" | "torch" | (string & {});
  /**
   * Readers only: a machine-local read cache folder, for a backend that has one (S3's
   * `S3ReadCache`); a backend without one ignores it. @default no cache
   */
  readonly cacheDir?: string;
}

/** What a {@link StorageBackend}'s writer factory takes: the router's options without `cacheDir`. */
export type StorageWriterRouterOptions = Omit<StorageRouterOptions, "cacheDir">;

/** What a {@link StorageBackend}'s reader factory takes: the router's options without `overwrite` and `format`. */
export type StorageReaderRouterOptions = Omit<StorageRouterOptions, "overwrite" | "format">;

/** Options of {@link StorageBackend.fileSystem}. */
export interface BackendFileSystemOptions {
  /**
   * A machine-local read cache folder that `rb` streams read through, for a backend that has
   * one (S3's); a backend without one ignores it. @default no cache
   */
  readonly cacheDir?: string;
}

/** Options of {@link StorageBackend.cleanupUploads}. */
export interface CleanupUploadsOptions {
  /** Only uploads started before this time. @default now (all of them) */
  readonly startedBefore?: Date;
  /**
   * Which uploads to keep: called once per listed page of uploads with their keys (object keys);
   * returns those to keep (`dcp gc` keeps those of a save whose lease is live). @default none kept
   */
  readonly keep?: (keys: readonly string[]) => Promise<ReadonlySet<string>>;
  /** Stops between pages and requests; throws `ABORTED`. */
  readonly signal?: AbortSignal;
}

/**
 * A storage backend as the registry knows it: which checkpoint ids it takes, its file system, and
 * how to make its writer and reader, as DCP's `_storage_setup` asks each candidate's
 * `validate_checkpoint_id` and tfjs's `router_registry` asks each router. A backend package
 * registers itself on import ({@link registerStorageBackend}); core names none but the local
 * folder. The operations (`@dcpjs/core/ops`) work on any backend through {@link fileSystem}.
 *
 * @typeParam W - its writer factory's options: the router's, plus its own (S3's `prefixStrategy`, …).
 * @typeParam R - its reader factory's options: the router's, plus its own (S3's `readerConstructor`, …).
 * @typeParam F - its file system's options: the router's, plus its own.
 */
export interface StorageBackend<
  W extends StorageWriterRouterOptions = StorageWriterRouterOptions,
  R extends StorageReaderRouterOptions = StorageReaderRouterOptions,
  F extends BackendFileSystemOptions = BackendFileSystemOptions,
> {
  /** Its name, for messages and for replacing a registration (e.g. `s3`, `local`). */
  readonly name: string;
  /**
   * Whether this backend takes a checkpoint id, as DCP's `validate_checkpoint_id`.
   * @param checkpointId - a path or URI.
   */
  validateCheckpointId(checkpointId: string): boolean;
  /**
   * The form of the ids it takes, for messages, e.g. `s3://BUCKET/PREFIX`. When its scheme is
   * that of an id no backend takes, the error says the id is malformed ("Expected
   * s3://BUCKET/PREFIX, got s3://") rather than that no backend is registered.
   * @default `${name}://…` for an id whose scheme is the backend's name
   */
  readonly checkpointIdForm?: string;
  /**
   * Whether it only reads (an HTTP server's files): it has no {@link createWriter}, and a save
   * or an operation that writes is refused with `INVALID_ARGUMENT`. @default false
   */
  readonly readOnly?: boolean;
  /**
   * Its file system and the checkpoint's path on it (normalised, as `fs.initPath` gives it), for
   * the operations that list, read, copy and remove files.
   * @param checkpointId - an id it validated (a checkpoint, or a folder or prefix above some).
   * @param options - its file system options (`cacheDir`, …).
   */
  fileSystem(checkpointId: string, options?: F): { fs: FileSystemBase; path: string };
  /**
   * The writer for a checkpoint id it validated; absent on a read-only backend.
   * @param checkpointId - the id.
   * @param options - see {@link StorageRouterOptions}, and its own.
   */
  createWriter?(checkpointId: string, options: W): StorageWriter;
  /**
   * The reader for a checkpoint id it validated.
   * @param checkpointId - the id.
   * @param options - see {@link StorageRouterOptions} (`overwrite` and `format` are not passed), and its own.
   */
  createReader(checkpointId: string, options: R): StorageReader;
  /**
   * Aborts the incomplete uploads a killed save left under a checkpoint (S3's multipart
   * uploads); absent on a backend that has none.
   * @param checkpointId - the checkpoint.
   * @param options - see {@link CleanupUploadsOptions}.
   * @returns the keys whose uploads were aborted.
   */
  cleanupUploads?(checkpointId: string, options: CleanupUploadsOptions): Promise<string[]>;
}

/** Packages known to provide a scheme, named in the error when none is registered for it. */
const KNOWN_PACKAGES: Readonly<Record<string, string>> = {
  s3: "@dcpjs/s3",
  http: "@dcpjs/http",
  https: "@dcpjs/http",
  hf: "@dcpjs/http",
};

const localFileSystem = new LocalFileSystem();

/** Local folders: any id without a `scheme://` (as `LocalFileSystem.validateCheckpointId` says). Asked last. */
const LOCAL_BACKEND: StorageBackend = {
  name: "local",
  validateCheckpointId: (id) => localFileSystem.validateCheckpointId(id),
  fileSystem: (path) => ({ fs: localFileSystem, path: localFileSystem.initPath(path) }),
  createWriter: (path, options) => new FileSystemWriter({ ...options, path }),
  createReader: (path, { cacheDir: _, ...options }) => new FileSystemReader({ ...options, path }),
};

const backends: StorageBackend[] = [];

/**
 * Registers a storage backend: checkpoint ids it validates resolve to it in `save`, `load`,
 * {@link createStorageWriter} and {@link createStorageReader}. Backends registered later are
 * asked first; registering a name again replaces the earlier one. Local folders are the fallback.
 *
 * @param backend - see {@link StorageBackend}.
 * @example `registerStorageBackend({ name: "mem", validateCheckpointId: (id) => id.startsWith("mem://"), … })`
 */
// biome-ignore lint/suspicious/noExplicitAny: a backend's own options are its own; the registry passes them through.
export function registerStorageBackend(backend: StorageBackend<any, any, any>): void {
  const at = backends.findIndex((b) => b.name === backend.name);
  if (at >= 0) backends.splice(at, 1);
  backends.unshift(backend);
}

/**
 * Removes a registered backend by name (tests, plug-in unloading).
 * @param name - the backend's name.
 * @returns whether one was registered.
 */
export function unregisterStorageBackend(name: string): boolean {
  const at = backends.findIndex((b) => b.name === name);
  if (at >= 0) backends.splice(at, 1);
  return at >= 0;
}

/** An id's `scheme` (before `://`), lower-cased; empty without one. */
function schemeOf(id: string): string {
  return /^([a-z][a-z0-9+.-]*):\/\//i.exec(id)?.[1]?.toLowerCase() ?? "";
}

/**
 * The backend that takes a checkpoint id: the registered ones, newest first, then local folders.
 *
 * @param checkpointId - a path or URI.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` for a missing or empty id; for an id a
 * registered backend of its scheme refuses ("Expected s3://BUCKET/PREFIX, got s3://", from
 * {@link StorageBackend.checkpointIdForm}); and for an id with a scheme no registered backend
 * takes (naming the package to install and import, when known).
 */
export function storageBackendFor(checkpointId: string | undefined): StorageBackend {
  if (typeof checkpointId !== "string" || checkpointId.length === 0) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      "Expected checkpointId (a folder or a URI such as s3://bucket/prefix) or a storageWriter/storageReader, got neither",
    );
  }
  const backend = [...backends, LOCAL_BACKEND].find((b) => b.validateCheckpointId(checkpointId));
  if (backend) return backend;
  const scheme = schemeOf(checkpointId);
  const owner = backends.find((b) => schemeOf(b.checkpointIdForm ?? `${b.name}://`) === scheme);
  if (owner) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected ${owner.checkpointIdForm ?? `${scheme}://…`}, got ${checkpointId} (the ${owner.name} backend does not take it)`,
    );
  }
  const known = KNOWN_PACKAGES[scheme];
  throw new CheckpointError(
    "INVALID_ARGUMENT",
    `Expected a storage backend registered for ${scheme}:// checkpoint ids (${checkpointId}), found none${
      known ? `: install ${known} and import it once (import "${known}")` : ""
    }; registered: ${[...backends.map((b) => b.name), "local"].join(", ")}`,
  );
}

/**
 * The storage writer for a checkpoint id, as DCP's `_storage_setup`: the registered backend that
 * validates it (see {@link registerStorageBackend}), else a {@link FileSystemWriter} for a folder.
 *
 * @param checkpointId - a local path or a URI a registered backend takes (`s3://…` once
 * `@dcpjs/s3` is imported).
 * @param options - thread count, overwrite, progress, format (see {@link StorageRouterOptions}),
 * and the backend's own options, passed through (S3's `prefixStrategy`, …).
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` as {@link storageBackendFor}, and for a
 * read-only backend ("Expected a writable backend…").
 */
export async function createStorageWriter<O extends StorageWriterRouterOptions = StorageWriterRouterOptions>(
  checkpointId: string | undefined,
  options: O = {} as O,
): Promise<StorageWriter> {
  const backend = storageBackendFor(checkpointId);
  if (!backend.createWriter)
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected a writable backend for ${checkpointId}, got the read-only ${backend.name} backend`,
    );
  const { cacheDir: _, ...writerOptions } = options as StorageRouterOptions;
  return backend.createWriter(checkpointId!, writerOptions);
}

/**
 * The storage reader for a checkpoint id; see {@link createStorageWriter}.
 *
 * @param checkpointId - a local path or a URI a registered backend takes.
 * @param options - thread count, progress and read cache (see {@link StorageRouterOptions}), and
 * the backend's own options, passed through (S3's `readerConstructor`, …).
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` as {@link storageBackendFor}.
 */
export async function createStorageReader<O extends StorageRouterOptions = StorageRouterOptions>(
  checkpointId: string | undefined,
  options: O = {} as O,
): Promise<StorageReader> {
  const backend = storageBackendFor(checkpointId);
  const { overwrite: _, format: __, ...readerOptions } = options as StorageRouterOptions;
  return backend.createReader(checkpointId!, readerOptions);
}

/**
 * The file system of the backend a checkpoint id resolves to, and the id's path on it: what the
 * operations (`@dcpjs/core/ops`) list, read, copy and remove through.
 *
 * @param checkpointId - a local path or a URI a registered backend takes.
 * @param options - see {@link BackendFileSystemOptions}.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` as {@link storageBackendFor}.
 */
export function backendFileSystem(
  checkpointId: string | undefined,
  options: BackendFileSystemOptions = {},
): { fs: FileSystemBase; path: string } {
  return storageBackendFor(checkpointId).fileSystem(checkpointId!, options);
}
