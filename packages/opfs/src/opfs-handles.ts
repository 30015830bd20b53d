// The part of the Origin Private File System API (WHATWG File System Standard) this package
// uses, declared structurally so that neither the package nor its users need TypeScript's DOM
// library; a page's real `FileSystemDirectoryHandle` satisfies these.

import { CheckpointError } from "@dcpjs/core";

/** A file's contents as a `Blob`-like snapshot: `getFile()`'s answer. */
export interface OpfsFileSnapshot {
  /** Bytes. */
  readonly size: number;
  /** Last modification, ms since the epoch. */
  readonly lastModified: number;
  /**
   * A range of the bytes, as `Blob.slice`.
   * @param start - first byte.
   * @param end - one past the last byte.
   */
  slice(start: number, end: number): { arrayBuffer(): Promise<ArrayBuffer> };
}

/** `FileSystemWritableFileStream`: writes land in a swap file and replace the file on `close()`. */
export interface OpfsWritable {
  /**
   * Writes at the stream's position and advances it.
   * @param data - the bytes (on an `ArrayBuffer`: Chromium refuses a `SharedArrayBuffer` view).
   */
  write(data: Uint8Array<ArrayBuffer>): Promise<void>;
  /** Replaces the file with what was written, atomically. */
  close(): Promise<void>;
  /**
   * Drops what was written; the file stays as it was.
   * @param reason - why.
   */
  abort(reason?: unknown): Promise<void>;
}

/** `FileSystemFileHandle`. */
export interface OpfsFileHandle {
  readonly kind: "file";
  readonly name: string;
  /** A snapshot of the file's bytes. */
  getFile(): Promise<OpfsFileSnapshot>;
  /**
   * A writable stream over a swap copy of the file.
   * @param options - `keepExistingData: false` starts from an empty file.
   */
  createWritable(options?: { keepExistingData?: boolean }): Promise<OpfsWritable>;
  /**
   * Moves the file into `parent` under `name`, replacing a file there, in one step; Chromium
   * has it (Chromium 110+), the standard has it as a proposal, other browsers may not.
   */
  move?(parent: OpfsDirectoryHandle, name: string): Promise<void>;
}

/** `FileSystemDirectoryHandle`. */
export interface OpfsDirectoryHandle {
  readonly kind: "directory";
  readonly name: string;
  /**
   * A file of this directory.
   * @param name - its name.
   * @param options - `create: true` creates it empty when missing.
   * @throws `DOMException` `NotFoundError` when missing (without `create`), `TypeMismatchError`
   * when it is a directory.
   */
  getFileHandle(name: string, options?: { create?: boolean }): Promise<OpfsFileHandle>;
  /**
   * A sub-directory.
   * @param name - its name.
   * @param options - `create: true` creates it when missing.
   * @throws `DOMException` `NotFoundError`, `TypeMismatchError` as {@link getFileHandle}.
   */
  getDirectoryHandle(name: string, options?: { create?: boolean }): Promise<OpfsDirectoryHandle>;
  /**
   * Removes an entry.
   * @param name - its name.
   * @param options - `recursive: true` for a non-empty directory.
   */
  removeEntry(name: string, options?: { recursive?: boolean }): Promise<void>;
  /** The entries, as `[name, handle]` pairs. */
  entries(): AsyncIterable<[string, OpfsFileHandle | OpfsDirectoryHandle]>;
}

/** What {@link opfsRoot} looks for on `navigator`. */
interface StorageManagerLike {
  getDirectory(): Promise<OpfsDirectoryHandle>;
}

/**
 * The origin's OPFS root, `navigator.storage.getDirectory()`.
 * @throws {@link CheckpointError} `IO_ERROR` when the environment has no OPFS (Node, an insecure context).
 */
export async function opfsRoot(): Promise<OpfsDirectoryHandle> {
  const storage = (globalThis as { navigator?: { storage?: Partial<StorageManagerLike> } }).navigator
    ?.storage;
  if (typeof storage?.getDirectory !== "function") {
    throw new CheckpointError(
      "IO_ERROR",
      "Expected navigator.storage.getDirectory() (the Origin Private File System of a secure browser context), found none",
    );
  }
  return storage.getDirectory();
}
