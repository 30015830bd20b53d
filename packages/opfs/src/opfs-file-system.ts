import { CheckpointError } from "@dcpjs/core";
import {
  type CreateStreamOptions,
  type FileEntry,
  type FileReadStream,
  type FileSystemBase,
  type FileWriteStream,
  type RenameOptions,
  type StreamMode,
  throwIfAborted,
} from "@dcpjs/core/extend";
import { isMissing, opfsError } from "./opfs-errors.js";
import { type OpfsDirectoryHandle, type OpfsFileHandle, opfsRoot } from "./opfs-handles.js";
import { isOpfsId, normalizeOpfsPath, opfsSegments } from "./opfs-path.js";
import { OpfsReadStream, OpfsWriteStream } from "./opfs-streams.js";

/** Options of {@link OpfsFileSystem}. */
export interface OpfsFileSystemOptions {
  /**
   * The directory `opfs://` paths start from. @default the origin's OPFS root,
   * `navigator.storage.getDirectory()`
   */
  readonly root?: () => Promise<OpfsDirectoryHandle>;
  /**
   * Whether `rename` may use `FileSystemFileHandle.move()` where the browser has it; false takes
   * the copy path every browser has (tests of that path). @default true
   */
  readonly useMove?: boolean;
}

/** What {@link withLock} looks for on `navigator` (the Web Locks API). */
interface LockManagerLike {
  request<T>(name: string, callback: () => Promise<T>): Promise<T>;
}

/**
 * Runs `op` holding the Web Lock `name` (shared by every page and worker of the origin), so that
 * check-then-act steps of two tabs do not interleave; without Web Locks, runs it as it is.
 */
function withLock<T>(name: string, op: () => Promise<T>): Promise<T> {
  const locks = (globalThis as { navigator?: { locks?: LockManagerLike } }).navigator?.locks;
  return locks ? locks.request(name, op) : op();
}

/**
 * {@link FileSystemBase} over the browser's Origin Private File System, for `opfs://FOLDER/…`
 * paths (the folders are nested directory handles below the origin's root). Writes go through
 * `createWritable()`, whose bytes replace the file only on `close()`; reads are ranged reads of a
 * `getFile()` snapshot; `rename` is `FileSystemFileHandle.move()` where the browser has it (one
 * atomic step in Chromium), else a copy through `createWritable()` (atomic on `close()` too) and
 * the removal of the source — either way the commit of `.metadata` is the same crash-safe step as
 * DCP's `_FileSystemWriter.finish` on a disk: a reader finds the old or the new checkpoint.
 * Works on a page's main thread and in workers.
 */
export class OpfsFileSystem implements FileSystemBase {
  readonly #root: () => Promise<OpfsDirectoryHandle>;
  readonly #useMove: boolean;

  /** @param options - see {@link OpfsFileSystemOptions}. */
  constructor(options: OpfsFileSystemOptions = {}) {
    this.#root = options.root ?? opfsRoot;
    this.#useMove = options.useMove ?? true;
  }

  /**
   * @inheritDoc
   * `wb` creates the file's folders, then the file, and writes through `createWritable()`; `rb`
   * takes a `getFile()` snapshot (`within` is ignored: OPFS has no links).
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` for another mode; {@link NotFoundError}
   * when reading a missing file; `IO_ERROR` for other OPFS failures (quota, a file another tab
   * holds open).
   */
  async createStream(path: string, mode: "wb", options?: CreateStreamOptions): Promise<FileWriteStream>;
  async createStream(path: string, mode: "rb", options?: CreateStreamOptions): Promise<FileReadStream>;
  async createStream(
    path: string,
    mode: StreamMode,
    options?: CreateStreamOptions,
  ): Promise<FileWriteStream | FileReadStream> {
    throwIfAborted(options?.signal);
    if (mode === "wb") {
      try {
        const { parent, name } = await this.#locate(path, true);
        const handle = await parent.getFileHandle(name, { create: true });
        return new OpfsWriteStream(
          path,
          parent,
          name,
          await handle.createWritable({ keepExistingData: false }),
        );
      } catch (error) {
        throw opfsError(error, "create", path);
      }
    }
    if (mode === "rb") {
      try {
        const { parent, name } = await this.#locate(path, false);
        return new OpfsReadStream(path, await (await parent.getFileHandle(name)).getFile());
      } catch (error) {
        throw opfsError(error, "open", path);
      }
    }
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Invalid mode=${JSON.stringify(mode)} mode argument: createStream only supports rb (read mode) & wb (write mode)`,
    );
  }

  /** @inheritDoc */
  concatPath(path: string, suffix: string): string {
    return normalizeOpfsPath(`${path}/${suffix}`);
  }

  /** @inheritDoc `opfs://a//b/` → `opfs://a/b`. */
  initPath(path: string): string {
    return normalizeOpfsPath(path);
  }

  /**
   * @inheritDoc
   * `move()` where the browser has it (and {@link OpfsFileSystemOptions.useMove}), else a copy
   * through `createWritable()` (the target is replaced on its `close()`) and the removal of the
   * source. Exclusive (`overwrite: false`): the check that `newPath` is free and the move run
   * under one Web Lock named after `newPath`, so of two tabs' exclusive renames exactly one wins.
   * @throws {@link CheckpointError} `ALREADY_EXISTS` when `overwrite` is false and `newPath`
   * exists; {@link NotFoundError} when `path` does not exist.
   */
  async rename(path: string, newPath: string, options?: RenameOptions): Promise<void> {
    throwIfAborted(options?.signal);
    const from = await this.#locate(path, false).catch((error) => {
      throw opfsError(error, "rename", path);
    });
    const to = await this.#locate(newPath, true).catch((error) => {
      throw opfsError(error, "rename to", newPath);
    });
    const move = async () => {
      if (options?.overwrite === false && (await this.exists(newPath))) {
        throw new CheckpointError("ALREADY_EXISTS", `Expected no file at ${newPath}, found one`);
      }
      let source: OpfsFileHandle;
      try {
        source = await from.parent.getFileHandle(from.name);
      } catch (error) {
        throw opfsError(error, "rename", path);
      }
      try {
        if (this.#useMove && typeof source.move === "function") {
          await source.move(to.parent, to.name);
          return;
        }
        const target = await to.parent.getFileHandle(to.name, { create: true });
        const writable = await target.createWritable({ keepExistingData: false });
        try {
          await writable.write(
            new Uint8Array(await (await source.getFile()).slice(0, Infinity).arrayBuffer()),
          );
          await writable.close();
        } catch (error) {
          await writable.abort().catch(() => {});
          throw error;
        }
        await from.parent.removeEntry(from.name);
      } catch (error) {
        throw opfsError(error, "rename", `${path} to ${newPath}`);
      }
    };
    await withLock(`dcpjs-opfs:${normalizeOpfsPath(newPath)}`, move);
  }

  /** @inheritDoc Nested directory handles, created as needed. */
  async mkdir(path: string): Promise<void> {
    try {
      await this.#directory(opfsSegments(path), true);
    } catch (error) {
      throw opfsError(error, "create directory", path);
    }
  }

  /** @inheritDoc A file (a directory at `path` counts as missing, as `stat` on a disk would not). */
  async exists(path: string): Promise<boolean> {
    try {
      const { parent, name } = await this.#locate(path, false);
      await parent.getFileHandle(name);
      return true;
    } catch (error) {
      if (isMissing(error)) return false;
      throw opfsError(error, "look up", path);
    }
  }

  /** @inheritDoc @throws {@link NotFoundError} when the file is missing. */
  async rmFile(path: string): Promise<void> {
    try {
      const { parent, name } = await this.#locate(path, false);
      await parent.getFileHandle(name); // removeEntry would also remove an empty directory
      await parent.removeEntry(name);
    } catch (error) {
      throw opfsError(error, "remove", path);
    }
  }

  /** @inheritDoc Files (with size and modification time) and sub-folders; `[]` for a missing folder. */
  async list(path: string, signal?: AbortSignal): Promise<FileEntry[]> {
    let dir: OpfsDirectoryHandle;
    try {
      dir = await this.#directory(opfsSegments(path), false);
    } catch (error) {
      if (isMissing(error)) return [];
      throw opfsError(error, "list", path);
    }
    const entries: FileEntry[] = [];
    try {
      for await (const [name, handle] of dir.entries()) {
        throwIfAborted(signal);
        if (handle.kind === "directory") {
          entries.push({ name, folder: true, size: 0, modifiedMs: 0 });
        } else {
          const file = await handle.getFile();
          entries.push({ name, folder: false, size: file.size, modifiedMs: file.lastModified });
        }
      }
    } catch (error) {
      throw opfsError(error, "list", path);
    }
    return entries;
  }

  /** @inheritDoc `opfs://…` ids. */
  validateCheckpointId(checkpointId: string): boolean {
    return isOpfsId(checkpointId);
  }

  /** The directory of `segments` below the root, created when `create`. */
  async #directory(segments: readonly string[], create: boolean): Promise<OpfsDirectoryHandle> {
    let dir = await this.#root();
    for (const segment of segments) dir = await dir.getDirectoryHandle(segment, { create });
    return dir;
  }

  /** A file path's directory (created when `create`) and name. */
  async #locate(path: string, create: boolean): Promise<{ parent: OpfsDirectoryHandle; name: string }> {
    const segments = opfsSegments(path);
    const name = segments.pop();
    if (name === undefined) {
      throw new CheckpointError("INVALID_ARGUMENT", `Expected a file path below opfs://, got ${path}`);
    }
    return { parent: await this.#directory(segments, create), name };
  }
}
