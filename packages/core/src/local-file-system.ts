import { type FileHandle, mkdir, open, rename, stat, unlink } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { CheckpointError, NotFoundError, throwIfAborted } from "./errors.js";
import type {
  CreateStreamOptions,
  FileReadStream,
  FileSystemBase,
  FileWriteStream,
  StreamMode,
} from "./filesystem-base.js";

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

class LocalWriteStream implements FileWriteStream {
  #position = 0;

  constructor(
    private readonly path: string,
    private readonly handle: FileHandle,
  ) {}

  async write(chunk: Uint8Array): Promise<void> {
    const position = this.#position;
    this.#position += chunk.byteLength;
    let done = 0;
    try {
      while (done < chunk.byteLength) {
        const { bytesWritten } = await this.handle.write(
          chunk,
          done,
          chunk.byteLength - done,
          position + done,
        );
        done += bytesWritten;
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

class LocalReadStream implements FileReadStream {
  constructor(
    private readonly path: string,
    private readonly handle: FileHandle,
  ) {}

  async read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    await this.readInto(offset, out, signal);
    return out;
  }

  async readInto(offset: number, target: Uint8Array, signal?: AbortSignal): Promise<void> {
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
      try {
        return new LocalReadStream(path, await open(path, "r"));
      } catch (error) {
        throw ioError(error, "open", path);
      }
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

  /** @inheritDoc */
  async rename(path: string, newPath: string): Promise<void> {
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

  /** @inheritDoc An id is local unless it has a URI scheme (`://`). */
  validateCheckpointId(checkpointId: string): boolean {
    return !checkpointId.includes("://");
  }
}
