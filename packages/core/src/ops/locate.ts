import { CheckpointError } from "../errors.js";
import type { Metadata } from "../plan/metadata.js";
import type { FileSystemBase } from "../storage/filesystem-base.js";
import { createStorageReader, type StorageBackend, storageBackendFor } from "../storage/registry.js";

/** Where an operation works: the backend a checkpoint id resolves to, its file system, and the id's path there. */
export interface Located {
  readonly backend: StorageBackend;
  readonly fs: FileSystemBase;
  /** The checkpoint's (or folder's) path on `fs`, as `fs.initPath` gives it. */
  readonly root: string;
}

/**
 * The backend, file system and path of a folder or prefix of any registered backend (local
 * folders, `s3://` once `@dcpjs/s3` is imported, …).
 *
 * @param path - a checkpoint id, or a folder or prefix above some.
 * @param options - `cacheDir`: a read cache folder for a backend that has one; `writable`: the
 * operation writes or removes there.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` as `storageBackendFor`, and for a read-only
 * backend when `writable`.
 */
export function locate(
  path: string,
  options: { readonly cacheDir?: string; readonly writable?: boolean } = {},
): Located {
  const backend = storageBackendFor(path);
  if (options.writable && (backend.readOnly || !backend.createWriter))
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected a writable backend for ${path}, got the read-only ${backend.name} backend`,
    );
  const { fs, path: root } = backend.fileSystem(
    path,
    options.cacheDir !== undefined ? { cacheDir: options.cacheDir } : {},
  );
  return { backend, fs, root };
}

/**
 * The committed metadata of a checkpoint, or undefined when there is none (incomplete, or not a
 * checkpoint).
 *
 * @param path - the checkpoint id.
 * @param signal - aborts the read.
 * @throws the reader's errors but `INCOMPLETE_CHECKPOINT` (a damaged `.metadata`'s code, backend errors).
 */
export async function committedMetadata(path: string, signal?: AbortSignal): Promise<Metadata | undefined> {
  try {
    return await (await createStorageReader(path)).readMetadata(signal);
  } catch (error) {
    if (error instanceof CheckpointError && error.code === "INCOMPLETE_CHECKPOINT") return undefined;
    throw error;
  }
}
