import {
  type BackendFileSystemOptions,
  registerStorageBackend,
  type StorageBackend,
  type StorageReaderRouterOptions,
  type StorageWriterRouterOptions,
} from "@dcpjs/core/extend";
import { abortIncompleteUploads } from "./multipart-cleanup.js";
import { S3ReadCache } from "./read-cache.js";
import { S3FileSystem, type S3FileSystemOptions } from "./s3-file-system.js";
import { S3StorageReader, type S3StorageReaderOptions } from "./s3-storage-reader.js";
import { S3StorageWriter, type S3StorageWriterOptions } from "./s3-storage-writer.js";

/** What the `s3://` backend's writer factory takes: the router's options and `S3StorageWriter`'s own. */
export type S3BackendWriterOptions = StorageWriterRouterOptions & Omit<S3StorageWriterOptions, "path">;

/** What the `s3://` backend's reader factory takes: the router's options and `S3StorageReader`'s own. */
export type S3BackendReaderOptions = StorageReaderRouterOptions & Omit<S3StorageReaderOptions, "path">;

/**
 * What the `s3://` backend's file system takes: `cacheDir` (an {@link S3ReadCache} there) and
 * {@link S3FileSystemOptions}' client, client config and reader constructor.
 */
export type S3BackendFileSystemOptions = BackendFileSystemOptions & Omit<S3FileSystemOptions, "readCache">;

/**
 * The `s3://` backend of the storage registry: `S3StorageWriter` and `S3StorageReader` with the
 * client built from the standard AWS variables (and `S3_ENDPOINT`), an {@link S3FileSystem} for
 * the operations (through an {@link S3ReadCache} given `cacheDir`), and the cleanup of the
 * multipart uploads a killed save left. Registered when `@dcpjs/s3` is imported.
 */
export const s3StorageBackend: StorageBackend<
  S3BackendWriterOptions,
  S3BackendReaderOptions,
  S3BackendFileSystemOptions
> = {
  name: "s3",
  checkpointIdForm: "s3://BUCKET/PREFIX",
  validateCheckpointId: (id) => S3StorageWriter.validateCheckpointId(id),
  fileSystem: (path, { cacheDir, ...options } = {}) => {
    const fs = new S3FileSystem({
      ...options,
      ...(cacheDir !== undefined ? { readCache: new S3ReadCache({ dir: cacheDir }) } : {}),
    });
    return { fs, path: fs.initPath(path) };
  },
  createWriter: (path, options) => new S3StorageWriter({ ...options, path }),
  createReader: (path, options) => new S3StorageReader({ ...options, path }),
  cleanupUploads: (path, { startedBefore, keep, signal }) =>
    abortIncompleteUploads(path, {
      ...(startedBefore ? { startedBefore } : {}),
      ...(keep ? { keep } : {}),
      ...(signal ? { signal } : {}),
    }),
};

// The module URL lets asyncSave's save thread import this module, and so find the backend there.
registerStorageBackend(s3StorageBackend, { moduleUrl: import.meta.url });
