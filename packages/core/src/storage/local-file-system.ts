import { constants as fsConstants } from "node:fs";
import {
  type FileHandle,
  link,
  mkdir,
  open,
  readdir,
  realpath,
  rename,
  stat,
  unlink,
} from "node:fs/promises";
import { dirname, join, resolve, sep } from "node:path";
import { CheckpointError, NotFoundError, throwIfAborted } from "../errors.js";
import { assertReadRange } from "../validate.js";
import type {
  CreateStreamOptions,
  FileEntry,
  FileReadStream,
  FileSystemBase,
  FileWriteStream,
  RenameOptions,
  StreamMode,
} from "./filesystem-base.js";
import type { ReadCapabilities } from "./read-schedule.js";
import { readViaReadInto } from "./read-via-read-into.js";

function isErrno(error: unknown, code: string): boolean {
  return typeof error === "object" && error !== null && (error as NodeJS.ErrnoException).code === code;
}

/**
 * Maps a `node:fs` error to the library's errors: ENOENT → {@link NotFoundError}, anything else
 * → {@link CheckpointError} `IO_ERROR`.
 */
function ioError(error: unknown, what: string, path: string): CheckpointError {
  if (isErrno(error, "ENOENT")) return new NotFoundError(path, { cause: error });
  const message = error instanceof Error ? error.message : String(error);
  return new CheckpointError("IO_ERROR", `Failed to ${what} ${path}: ${message}`, { cause: error });
}

/**
 * Checks that `path`, with every symbolic link followed, lies inside `folder` (also resolved).
 * @throws {@link CheckpointError} `UNSAFE_PATH` when it does not; {@link NotFoundError} when it is missing.
 */
async function assertWithin(path: string, folder: string): Promise<void> {
  const [real, root] = await Promise.all([realpath(path), realpath(folder)]);
  if (!real.startsWith(root.endsWith(sep) ? root : root + sep)) {
    throw new CheckpointError(
      "UNSAFE_PATH",
      `Expected ${path} to lie inside the checkpoint folder ${root}, but it resolves to ${real}`,
    );
  }
}

/** The buffers left after the first `skip` bytes of `parts` (a partial first one as a view): what a short vectored read or write continues with. */
function skipBytes(parts: readonly Uint8Array[], skip: number): Uint8Array[] {
  let i = 0;
  while (i < parts.length && skip >= parts[i]!.byteLength) skip -= parts[i++]!.byteLength;
  const rest = parts.slice(i);
  if (skip > 0) rest[0] = rest[0]!.subarray(skip);
  return rest;
}

class LocalWriteStream implements FileWriteStream {
  #position = 0;

  constructor(
    private readonly path: string,
    private readonly handle: FileHandle,
  ) {}

  async write(bytes: Uint8Array): Promise<void> {
    const position = this.#position;
    this.#position += bytes.byteLength;
    let done = 0;
    try {
      while (done < bytes.byteLength) {
        const { bytesWritten } = await this.handle.write(
          bytes,
          done,
          bytes.byteLength - done,
          position + done,
        );
        done += bytesWritten;
      }
    } catch (error) {
      throw ioError(error, "write", this.path);
    }
  }

  /** @inheritDoc (one `pwritev` per `IOV_MAX` buffers, in libuv; short writes are continued) */
  async writev(parts: readonly Uint8Array[]): Promise<void> {
    const position = this.#position;
    let total = 0;
    for (const c of parts) total += c.byteLength;
    this.#position += total;
    let done = 0;
    let rest: readonly Uint8Array[] = parts;
    try {
      while (done < total) {
        const { bytesWritten } = await this.handle.writev(rest as Uint8Array[], position + done);
        done += bytesWritten;
        if (done < total) rest = skipBytes(rest, bytesWritten);
      }
    } catch (error) {
      throw ioError(error, "write", this.path);
    }
  }

  tell(): number {
    return this.#position;
  }

  async sync(): Promise<void> {
    try {
      await this.handle.sync();
    } catch (error) {
      throw ioError(error, "fsync", this.path);
    }
  }

  async close(): Promise<void> {
    try {
      await this.handle.close();
    } catch (error) {
      throw ioError(error, "close", this.path);
    }
  }

  async abort(): Promise<void> {
    await this.handle.close().catch(() => {});
    await unlink(this.path).catch(() => {});
  }
}

/** Most buffers one `readv(2)` takes (Linux's `IOV_MAX`). */
export const IOV_MAX = 1024;

class LocalReadStream implements FileReadStream {
  constructor(
    private readonly path: string,
    private readonly handle: FileHandle,
  ) {}

  read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    return readViaReadInto(this, offset, length, signal);
  }

  async readInto(offset: number, target: Uint8Array, signal?: AbortSignal): Promise<void> {
    assertReadRange(offset, target.byteLength);
    throwIfAborted(signal);
    const length = target.byteLength;
    let done = 0;
    try {
      while (done < length) {
        const { bytesRead } = await this.handle.read(target, done, length - done, offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
    } catch (error) {
      throw ioError(error, "read", this.path);
    }
    if (done < length) {
      throw new CheckpointError(
        "TRUNCATED",
        `Expected ${length} bytes at offset ${offset} of ${this.path}, but the file ends after ${done} of them`,
      );
    }
  }

  /** @inheritDoc `FileHandle.readv`, at most {@link IOV_MAX} buffers a call, continued after a short read. */
  async readvInto(offset: number, targets: readonly Uint8Array[], signal?: AbortSignal): Promise<void> {
    throwIfAborted(signal);
    const total = targets.reduce((n, t) => n + t.byteLength, 0);
    assertReadRange(offset, total);
    const pending = targets.filter((t) => t.byteLength > 0);
    let at = 0; // the first buffer not filled yet (an index: slicing the rest each call is quadratic)
    let position = offset;
    try {
      while (at < pending.length) {
        const { bytesRead } = await this.handle.readv(pending.slice(at, at + IOV_MAX), position);
        if (bytesRead === 0) break;
        position += bytesRead;
        // Step over the buffers filled; a partly filled one continues where it stopped.
        let skip = bytesRead;
        while (at < pending.length && skip >= pending[at]!.byteLength) skip -= pending[at++]!.byteLength;
        if (skip > 0) pending[at] = pending[at]!.subarray(skip);
      }
    } catch (error) {
      throw ioError(error, "read", this.path);
    }
    if (position < offset + total) {
      throw new CheckpointError(
        "TRUNCATED",
        `Expected ${total} bytes at offset ${offset} of ${this.path}, but the file ends after ${position - offset} of them`,
      );
    }
  }

  async size(signal?: AbortSignal): Promise<number> {
    throwIfAborted(signal);
    try {
      return (await this.handle.stat()).size;
    } catch (error) {
      throw ioError(error, "stat", this.path);
    }
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

/**
 * {@link FileSystemBase} over the local file system (`node:fs/promises`), as DCP's `FileSystem`:
 * positional reads and writes on file handles, `fsync` on request, atomic `rename`.
 */
export class LocalFileSystem implements FileSystemBase {
  /** @inheritDoc The defaults (a local disk's), with scatter reads (`readv`). */
  readonly readCapabilities: Partial<ReadCapabilities> = { scatterReads: true };

  /**
   * @inheritDoc
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` for a mode other than `rb`/`wb` (the
   * message of DCP's `create_stream`); {@link NotFoundError} when reading a missing file.
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
        await mkdir(dirname(path), { recursive: true });
        return new LocalWriteStream(path, await open(path, "w"));
      } catch (error) {
        throw ioError(error, "create", path);
      }
    }
    if (mode === "rb") {
      let handle: FileHandle;
      try {
        if (options?.within !== undefined) await assertWithin(path, options.within);
        // O_NONBLOCK: opening a FIFO must not wait for a writer; it is then refused as not a file.
        handle = await open(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
      } catch (error) {
        if (error instanceof CheckpointError) throw error;
        throw ioError(error, "open", path);
      }
      const isFile = await handle.stat().then(
        (s) => s.isFile(),
        () => false,
      );
      if (!isFile) {
        await handle.close().catch(() => {});
        throw new CheckpointError(
          "UNSAFE_PATH",
          `Expected ${path} to be a regular file, found something else`,
        );
      }
      return new LocalReadStream(path, handle);
    }
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Invalid mode=${JSON.stringify(mode)} mode argument: createStream only supports rb (read mode) & wb (write mode)`,
    );
  }

  /** @inheritDoc */
  concatPath(path: string, suffix: string): string {
    return join(path, suffix);
  }

  /** @inheritDoc */
  initPath(path: string): string {
    return resolve(path);
  }

  /**
   * @inheritDoc
   * `rename(2)`, atomic on POSIX; exclusive (`overwrite: false`) as `link(2)` — which fails when
   * the target exists — followed by unlinking the source.
   */
  async rename(path: string, newPath: string, options?: RenameOptions): Promise<void> {
    if (options?.overwrite === false) {
      try {
        await link(path, newPath);
      } catch (error) {
        if (isErrno(error, "EEXIST"))
          throw new CheckpointError("ALREADY_EXISTS", `Expected no file at ${newPath}, found one`, {
            cause: error,
          });
        throw ioError(error, "link", path);
      }
      await unlink(path).catch(() => {});
      return;
    }
    try {
      await rename(path, newPath);
    } catch (error) {
      throw ioError(error, "rename", path);
    }
  }

  /** @inheritDoc */
  async mkdir(path: string): Promise<void> {
    try {
      await mkdir(path, { recursive: true });
    } catch (error) {
      throw ioError(error, "create directory", path);
    }
  }

  /** @inheritDoc */
  async exists(path: string): Promise<boolean> {
    try {
      await stat(path);
      return true;
    } catch (error) {
      if (isErrno(error, "ENOENT") || isErrno(error, "ENOTDIR")) return false;
      throw ioError(error, "stat", path);
    }
  }

  /** @inheritDoc */
  async rmFile(path: string): Promise<void> {
    try {
      await unlink(path);
    } catch (error) {
      throw ioError(error, "remove", path);
    }
  }

  /** @inheritDoc Regular files and folders (`readdir` + `stat`); `[]` for a missing folder. */
  async list(path: string): Promise<FileEntry[]> {
    try {
      const entries = (await readdir(path, { withFileTypes: true })).filter(
        (d) => d.isFile() || d.isDirectory(),
      );
      return await Promise.all(
        entries.map(async (d) => {
          const st = await stat(join(path, d.name));
          return {
            name: d.name,
            folder: d.isDirectory(),
            size: d.isDirectory() ? 0 : st.size,
            modifiedMs: st.mtimeMs,
          };
        }),
      );
    } catch (error) {
      if (isErrno(error, "ENOENT") || isErrno(error, "ENOTDIR")) return [];
      throw ioError(error, "list", path);
    }
  }

  /** @inheritDoc An id is local unless it has a URI scheme (`://`). */
  validateCheckpointId(checkpointId: string): boolean {
    return !checkpointId.includes("://");
  }
}
