import { CheckpointError } from "../errors.js";
import type {
  CreateStreamOptions,
  FileEntry,
  FileSystemBase,
  StreamMode,
} from "../storage/filesystem-base.js";

function unsupported(path: string): CheckpointError {
  return new CheckpointError(
    "INVALID_ARGUMENT",
    `Expected a storage backend for ${JSON.stringify(path)} in a browser (local folders need Node.js: pass \`fs\`, or register a backend such as OPFS), got none`,
  );
}

/**
 * Local folders in a browser: there are none. Every operation rejects with `INVALID_ARGUMENT`, and
 * no checkpoint id is taken as a local folder, so ids without a registered backend's scheme are
 * refused. The browser build's stand-in for Node's `LocalFileSystem` (`#platform`).
 */
export class LocalFileSystem implements FileSystemBase {
  /** Refuses: see the class. @param path - the file. */
  async createStream(path: string, _mode: StreamMode, _options?: CreateStreamOptions): Promise<never> {
    throw unsupported(path);
  }
  /** @param path - a folder. @param suffix - what to append. @returns `path/suffix`. */
  concatPath(path: string, suffix: string): string {
    return path === "" ? suffix : `${path.replace(/\/+$/, "")}/${suffix}`;
  }
  /** @param path - the checkpoint's path. @returns it. */
  initPath(path: string): string {
    return path;
  }
  /** Refuses: see the class. @param path - the file. */
  async rename(path: string, _newPath: string): Promise<never> {
    throw unsupported(path);
  }
  /** Refuses: see the class. @param path - the folder. */
  async mkdir(path: string): Promise<never> {
    throw unsupported(path);
  }
  /** Refuses: see the class. @param path - the file. */
  async exists(path: string): Promise<never> {
    throw unsupported(path);
  }
  /** Refuses: see the class. @param path - the file. */
  async rmFile(path: string): Promise<never> {
    throw unsupported(path);
  }
  /** Refuses: see the class. @param path - the folder. */
  async list(path: string): Promise<FileEntry[]> {
    throw unsupported(path);
  }
  /** No id is a local folder in a browser. @returns `false`. */
  validateCheckpointId(_checkpointId: string): boolean {
    return false;
  }
}
