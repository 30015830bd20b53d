// @dcpjs/opfs — checkpoints in the browser's Origin Private File System. Importing it registers
// the opfs:// storage backend (./register.ts) with @dcpjs/core.
import "./register.js";

export { OpfsFileSystem, type OpfsFileSystemOptions } from "./opfs-file-system.js";
export type {
  OpfsDirectoryHandle,
  OpfsFileHandle,
  OpfsFileSnapshot,
  OpfsWritable,
} from "./opfs-handles.js";
export { opfsRoot } from "./opfs-handles.js";
export { isOpfsId, normalizeOpfsPath, OPFS_SCHEME, opfsSegments } from "./opfs-path.js";
export { opfsStorageBackend } from "./register.js";
