import {
  type BackendFileSystemOptions,
  type FileSystemBase,
  registerStorageBackend,
  type StorageBackend,
  type StorageReaderRouterOptions,
} from "@dcpjs/core/extend";
import { isHttpCheckpointId } from "./hf-url.js";
import { HttpFileSystem } from "./http-file-system.js";
import type { HttpOptions } from "./http-options.js";
import { HttpStorageReader } from "./http-storage-reader.js";

/**
 * The `http` backend of the storage registry: `http://`, `https://` and `hf://` checkpoint ids,
 * read-only ({@link HttpStorageReader}; no writer: `save` and the writing operations refuse it with `INVALID_ARGUMENT`). Registered when `@dcpjs/http` is
 * imported.
 */
export const httpStorageBackend = {
  name: "http",
  checkpointIdForm: "https://HOST/PATH (or hf://ORG/REPO[@REVISION][/SUBFOLDER])",
  readOnly: true,
  validateCheckpointId: (id: string) => isHttpCheckpointId(id),
  /**
   * The file system and normalised path for a checkpoint id (`dcp cp`, `convert`, `verify`, `inspect`).
   * @param checkpointId - an `http(s)://` URL or `hf://` id.
   * @param options - see {@link HttpOptions}.
   */
  fileSystem: (
    checkpointId: string,
    options?: BackendFileSystemOptions & HttpOptions,
  ): { fs: FileSystemBase; path: string } => {
    const fs = new HttpFileSystem(options);
    return { fs, path: fs.initPath(checkpointId) };
  },
  createReader: (checkpointId, options) => new HttpStorageReader({ ...options, url: checkpointId }),
} satisfies StorageBackend<
  never,
  StorageReaderRouterOptions & HttpOptions,
  BackendFileSystemOptions & HttpOptions
>;

// The module URL lets another thread (asyncSave's save thread) import this module to find the backend.
registerStorageBackend(httpStorageBackend, { moduleUrl: import.meta.url });
