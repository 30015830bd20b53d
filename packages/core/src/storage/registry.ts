import { CheckpointError } from "../errors.js";
import { FileSystemReader } from "./filesystem-reader.js";
import { FileSystemWriter } from "./filesystem-writer.js";
import { LocalFileSystem } from "./local-file-system.js";
import type { ProgressCallback } from "./progress.js";
import type { StorageReader, StorageWriter } from "./storage.js";

/** Options `save`, `load` and the CLI pass to whichever backend a checkpoint id resolves to. */
export interface StorageRouterOptions {
  /** Files per rank written (and read) concurrently. @default 1 for writers, 4 for readers */
  readonly threadCount?: number;
  /** Writers only: replace an existing checkpoint. @default true */
  readonly overwrite?: boolean;
  /** Called after each item is written or read. */
  readonly onProgress?: ProgressCallback;
}

/**
 * A storage backend as the registry knows it: which checkpoint ids it takes and how to make its
 * writer and reader, as DCP's `_storage_setup` asks each candidate's `validate_checkpoint_id` and
 * tfjs's `router_registry` asks each router. A backend package registers itself on import
 * ({@link registerStorageBackend}); core names none but the local folder.
 */
export interface StorageBackend {
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
   * The writer for a checkpoint id it validated.
   * @param checkpointId - the id.
   * @param options - see {@link StorageRouterOptions}.
   */
  createWriter(checkpointId: string, options: StorageRouterOptions): StorageWriter;
  /**
   * The reader for a checkpoint id it validated.
   * @param checkpointId - the id.
   * @param options - see {@link StorageRouterOptions} (`overwrite` is not passed).
   */
  createReader(checkpointId: string, options: Omit<StorageRouterOptions, "overwrite">): StorageReader;
}

/** Packages known to provide a scheme, named in the error when none is registered for it. */
const KNOWN_PACKAGES: Readonly<Record<string, string>> = { s3: "@dcpjs/s3" };

const localFileSystem = new LocalFileSystem();

/** Local folders: any id without a `scheme://` (as `LocalFileSystem.validateCheckpointId` says). Asked last. */
const LOCAL_BACKEND: StorageBackend = {
  name: "local",
  validateCheckpointId: (id) => localFileSystem.validateCheckpointId(id),
  createWriter: (path, options) => new FileSystemWriter({ ...options, path }),
  createReader: (path, options) => new FileSystemReader({ ...options, path }),
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
export function registerStorageBackend(backend: StorageBackend): void {
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
 * @param options - thread count, overwrite, progress (see {@link StorageRouterOptions}).
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` as {@link storageBackendFor}.
 */
export async function createStorageWriter(
  checkpointId: string | undefined,
  options: StorageRouterOptions = {},
): Promise<StorageWriter> {
  const backend = storageBackendFor(checkpointId);
  return backend.createWriter(checkpointId!, options);
}

/**
 * The storage reader for a checkpoint id; see {@link createStorageWriter}.
 *
 * @param checkpointId - a local path or a URI a registered backend takes.
 * @param options - thread count and progress (see {@link StorageRouterOptions}).
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` as {@link storageBackendFor}.
 */
export async function createStorageReader(
  checkpointId: string | undefined,
  options: StorageRouterOptions = {},
): Promise<StorageReader> {
  const backend = storageBackendFor(checkpointId);
  const { overwrite: _, ...readerOptions } = options;
  return backend.createReader(checkpointId!, readerOptions);
}
