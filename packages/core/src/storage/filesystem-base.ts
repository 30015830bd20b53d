import type { ByteRange, DEFAULT_READ_CAPABILITIES, ReadCapabilities } from "./read-schedule.js";

/** A stream that writes one data file front to back, counting the bytes it has taken. */
export interface FileWriteStream {
  /**
   * Appends bytes. The stream may keep a reference to `bytes` until {@link FileWriteStream.close}
   * resolves, so the caller must not change it before then.
   * @param bytes - the bytes.
   */
  write(bytes: Uint8Array): Promise<void>;
  /**
   * Appends several buffers, in order, as one vectored write where the backend has one (`pwritev`
   * locally); optional — writers fall back to one {@link FileWriteStream.write} of their
   * concatenation (a copy). The same reference rule as `write` holds for every buffer.
   * @param parts - the bytes, in file order; any number of buffers.
   */
  writev?(parts: readonly Uint8Array[]): Promise<void>;
  /** Bytes written so far: the offset the next write lands at (as Python's `tell()`). */
  tell(): number;
  /** Makes the written bytes durable (fsync); a no-op where the backend has no such notion. */
  sync(): Promise<void>;
  /** Completes the file; it is visible at its path once this resolves. */
  close(): Promise<void>;
  /**
   * Abandons the file: nothing is left at its path (a local partial file is removed, an S3
   * multipart upload aborted). Safe to call after a failed write; never throws.
   * @param reason - why, for logs.
   */
  abort(reason?: unknown): Promise<void>;
}

/** A stream that reads byte ranges of one data file. */
export interface FileReadStream {
  /**
   * Reads exactly `length` bytes at `offset`.
   * @param offset - byte offset in the file.
   * @param length - bytes to read.
   * @param signal - aborts the read.
   * @throws {@link CheckpointError} `TRUNCATED` when the file ends before `offset + length`;
   * `INVALID_ARGUMENT` (a rejected promise) when `offset` or `length` is not an integer ≥ 0.
   */
  read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array>;
  /**
   * Reads exactly `target.byteLength` bytes at `offset` into `target` (no allocation); optional —
   * readers fall back to {@link FileReadStream.read} and a copy.
   * @param offset - byte offset in the file.
   * @param target - where the bytes go.
   * @param signal - aborts the read.
   * @throws {@link CheckpointError} `TRUNCATED` when the file ends before `offset + target.byteLength`.
   */
  readInto?(offset: number, target: Uint8Array, signal?: AbortSignal): Promise<void>;
  /**
   * Reads the bytes at `offset` into `targets` back to back (a scatter read, as `readv(2)`):
   * `targets[0]` gets the first `targets[0].byteLength` bytes, and so on. Required of the streams
   * of a backend that declares `readCapabilities.scatterReads`.
   * @param offset - byte offset in the file.
   * @param targets - where the bytes go, in file order.
   * @param signal - aborts the read.
   * @throws {@link CheckpointError} `TRUNCATED` when the file ends before the last target is full.
   */
  readvInto?(offset: number, targets: readonly Uint8Array[], signal?: AbortSignal): Promise<void>;
  /**
   * The file's size in bytes.
   * @param signal - aborts the request.
   */
  size(signal?: AbortSignal): Promise<number>;
  /** Releases the file. */
  close(): Promise<void>;
}

/** The mode of {@link FileSystemBase.createStream}: `rb` to read, `wb` to write, as DCP. */
export type StreamMode = "rb" | "wb";

/** Options of {@link FileSystemBase.createStream}. */
export interface CreateStreamOptions {
  /** Aborts the stream's pending and future operations; a write stream then cleans up as `abort()`. */
  readonly signal?: AbortSignal;
  /**
   * For `rb`: the folder the file must lie in once links are followed (the checkpoint's path), so
   * that metadata cannot reach outside it through a symbolic link. Backends without links ignore it.
   */
  readonly within?: string;
  /**
   * For `rb`: how the file will be read. `random`: a few small ranges at any position (headers,
   * indexes); a backend that reads ahead or needs the ranges up front picks a plain ranged reader.
   * @default the backend's reader for checkpoint data
   */
  readonly access?: "random";
  /**
   * For `rb`: the read runs of the file, in file order, as the read schedule made them by the
   * backend's own rule (`readCapabilities.coalesce`): each is asked for with one call (a large
   * stored item's run: in pieces inside it); some may not be asked for at all (a saved chunk
   * another rank of this process reads). A backend that plans its requests up front uses them
   * (s3torchconnector's DCP-optimized reader: one ranged GET per call inside a run); others
   * ignore them.
   */
  readonly runs?: readonly ByteRange[];
  /**
   * For `rb`: bytes an earlier stream returned for this file failed their check (damaged in
   * transit). A backend that keeps a copy of what it fetched (a read cache) must not serve that
   * copy: it fetches from the source again and replaces it. Others ignore it.
   * @default false
   */
  readonly refetch?: boolean;
}

/** One entry of {@link FileSystemBase.list}. */
export interface FileEntry {
  /** The name, relative to the listed folder. */
  readonly name: string;
  /** A sub-folder (an S3 common prefix) rather than a file. */
  readonly folder: boolean;
  /** Bytes (0 for a folder). */
  readonly size: number;
  /** Last modification, ms since the epoch (0 when unknown, e.g. an S3 prefix). */
  readonly modifiedMs: number;
}

/** Options of {@link FileSystemBase.rename}. */
export interface RenameOptions {
  /**
   * Replace a file at the new path (atomically: a reader sees the old or the new file). When
   * false, the rename is exclusive: it fails with `ALREADY_EXISTS` if the new path exists, and of
   * concurrent exclusive renames to one path exactly one succeeds. @default true
   */
  readonly overwrite?: boolean;
  /**
   * Aborts the rename's requests (a backend whose rename is several requests, as S3's copy or
   * PUT). A rename aborted while its replacing step was in flight may or may not have happened.
   * @default none
   */
  readonly signal?: AbortSignal;
}

/**
 * The storage operations {@link FileSystemWriter} and {@link FileSystemReader} are written
 * against, as DCP's `FileSystemBase`. `LocalFileSystem` and `S3FileSystem` implement it; paths are
 * whatever the backend understands (local paths, `s3://bucket/key`).
 */
export interface FileSystemBase {
  /**
   * Opens a file for writing (`wb`) or ranged reading (`rb`).
   * @param path - the file's full path.
   * @param mode - `rb` or `wb`.
   * @param options - an `AbortSignal`.
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` for another mode; `NOT_FOUND` when reading
   * a missing file (a backend may defer this to the first read).
   */
  createStream(path: string, mode: "wb", options?: CreateStreamOptions): Promise<FileWriteStream>;
  createStream(path: string, mode: "rb", options?: CreateStreamOptions): Promise<FileReadStream>;
  /**
   * Joins a checkpoint path and a relative path.
   * @param path - the checkpoint path.
   * @param suffix - a relative path (may contain `/`).
   */
  concatPath(path: string, suffix: string): string;
  /**
   * Normalises a checkpoint id into the path used from then on.
   * @param path - the checkpoint id.
   */
  initPath(path: string): string;
  /**
   * Renames a file, replacing `newPath` atomically (no moment without a file there).
   * @param path - the current path.
   * @param newPath - the new path.
   * @param options - `overwrite: false` for an exclusive rename.
   * @throws {@link CheckpointError} `ALREADY_EXISTS` when `overwrite` is false and `newPath` exists
   * (the source is left in place); `NOT_FOUND` when `path` does not exist.
   */
  rename(path: string, newPath: string, options?: RenameOptions): Promise<void>;
  /**
   * Creates a directory and its parents (a no-op on object stores).
   * @param path - the directory.
   */
  mkdir(path: string): Promise<void>;
  /**
   * Whether a file exists; false only for "not found", other errors are thrown.
   * @param path - the file.
   */
  exists(path: string): Promise<boolean>;
  /**
   * Removes a file.
   * @param path - the file.
   */
  rmFile(path: string): Promise<void>;
  /**
   * What this backend's read streams are good at, as data: its coalescing rule (which neighbouring
   * small items one call reads, the gap and batch bounds), the piece size of large items, scatter
   * reads, rereads after a checksum mismatch. Fields left out take
   * {@link DEFAULT_READ_CAPABILITIES}'s. The read scheduler applies the rule and hands the
   * backend the resulting runs (`createStream(path, "rb", { runs })`); nothing asks the backend's type.
   * @default a local disk's
   */
  readonly readCapabilities?: Partial<ReadCapabilities>;
  /**
   * Optional: what lies directly in a folder (or under an S3 prefix and `/`): files with their
   * size and modification time, and sub-folders (S3: common prefixes).
   * @param path - the folder.
   * @param signal - aborts the listing.
   * @returns entries named relative to `path`; `[]` for a missing folder.
   */
  list?(path: string, signal?: AbortSignal): Promise<FileEntry[]>;
  /**
   * Whether this backend can handle a checkpoint id.
   * @param checkpointId - a path or URI.
   */
  validateCheckpointId(checkpointId: string): boolean;
}
