import { CheckpointError } from "@dcpjs/core";
import { type FileSystemBase, registerStorageBackend, type StorageBackend } from "@dcpjs/core/extend";
import { isHttpCheckpointId } from "./hf-url.js";
import { HttpFileSystem } from "./http-file-system.js";
import type { HttpOptions } from "./http-options.js";
import { HttpStorageReader } from "./http-storage-reader.js";

/**
 * The `http` backend of the storage registry: `http://`, `https://` and `hf://` checkpoint ids,
 * read-only ({@link HttpStorageReader}; a writer is refused). Registered when `@dcpjs/http` is
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
  fileSystem: (checkpointId: string, options?: HttpOptions): { fs: FileSystemBase; path: string } => {
    const fs = new HttpFileSystem(options);
    return { fs, path: fs.initPath(checkpointId) };
  },
  createWriter: (checkpointId: string) => {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected a writable checkpoint id, got ${checkpointId}: the HTTP backend is read-only`,
    );
  },
  createReader: (checkpointId, options) => new HttpStorageReader({ ...options, url: checkpointId }),
  // o-ops adds these fields (`fileSystem`, `readOnly`) to StorageBackend; until then the object carries them beside the type.
} as StorageBackend & {
  readonly readOnly: true;
  fileSystem(checkpointId: string, options?: HttpOptions): { fs: FileSystemBase; path: string };
};

registerStorageBackend(httpStorageBackend);
