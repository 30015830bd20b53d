import { FileSystemReader, FileSystemWriter } from "@dcpjs/core";
import { registerStorageBackend, type StorageBackend } from "@dcpjs/core/extend";
import { OpfsFileSystem } from "./opfs-file-system.js";
import { isOpfsId } from "./opfs-path.js";

/** The one file system the `opfs://` backend uses (it holds no state but the root's getter). */
const opfsFileSystem = new OpfsFileSystem();

/**
 * The `opfs://` backend of the storage registry: `FileSystemWriter` and `FileSystemReader` (the
 * dcpjs format, DCP's layout and commit protocol) over {@link OpfsFileSystem}, so that
 * `save(sd, { checkpointId: "opfs://ckpt/step-5" })`, `load`, `asyncSave` and
 * `latestCheckpoint("opfs://ckpt")` work in a page. Registered when `@dcpjs/opfs` is imported.
 * A plain path stays a local folder (Node); a page names OPFS with the scheme.
 */
export const opfsStorageBackend: StorageBackend = {
  name: "opfs",
  checkpointIdForm: "opfs://FOLDER/…",
  validateCheckpointId: (id) => isOpfsId(id),
  fileSystem: (path) => ({ fs: opfsFileSystem, path: opfsFileSystem.initPath(path) }),
  createWriter: (path, options) =>
    new FileSystemWriter({ ...options, fs: opfsFileSystem, path: opfsFileSystem.initPath(path) }),
  createReader: (path, { cacheDir: _, ...options }) =>
    new FileSystemReader({ ...options, fs: opfsFileSystem, path: opfsFileSystem.initPath(path) }),
};

registerStorageBackend(opfsStorageBackend);
