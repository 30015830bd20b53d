import { CheckpointError } from "@dcpjs/core";
import {
  assertReadRange,
  type FileReadStream,
  type FileWriteStream,
  throwIfAborted,
} from "@dcpjs/core/extend";
import { opfsError } from "./opfs-errors.js";
import type { OpfsDirectoryHandle, OpfsFileSnapshot, OpfsWritable } from "./opfs-handles.js";

/** `bytes` on a plain `ArrayBuffer`: itself, or a copy of a `SharedArrayBuffer` view (which OPFS refuses). */
function onArrayBuffer(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return bytes.buffer instanceof ArrayBuffer ? (bytes as Uint8Array<ArrayBuffer>) : new Uint8Array(bytes);
}

/**
 * Writes one OPFS file front to back through `createWritable()`: the bytes go to the browser's
 * swap file and replace the file only on {@link close} — a page killed mid-write (a reload, a
 * crash) leaves the file as it was, as an atomic rename does on a disk.
 */
export class OpfsWriteStream implements FileWriteStream {
  #position = 0;

  /**
   * @param path - the file's `opfs://` path, for messages.
   * @param parent - its directory.
   * @param name - its name there.
   * @param writable - the file's writable stream.
   */
  constructor(
    private readonly path: string,
    private readonly parent: OpfsDirectoryHandle,
    private readonly name: string,
    private readonly writable: OpfsWritable,
  ) {}

  /** @inheritDoc (a view on a `SharedArrayBuffer` is copied first) */
  async write(bytes: Uint8Array): Promise<void> {
    this.#position += bytes.byteLength;
    try {
      await this.writable.write(onArrayBuffer(bytes));
    } catch (error) {
      throw opfsError(error, "write", this.path);
    }
  }

  /** @inheritDoc One `write` per part, in order (OPFS has no vectored write). */
  async writev(parts: readonly Uint8Array[]): Promise<void> {
    for (const part of parts) await this.write(part);
  }

  tell(): number {
    return this.#position;
  }

  /** @inheritDoc A no-op: `close()` is the commit (OPFS has no fsync of its own). */
  async sync(): Promise<void> {}

  async close(): Promise<void> {
    try {
      await this.writable.close();
    } catch (error) {
      throw opfsError(error, "close", this.path);
    }
  }

  /** @inheritDoc Drops the swap file and removes the entry `createStream` made. */
  async abort(reason?: unknown): Promise<void> {
    await this.writable.abort(reason).catch(() => {});
    await this.parent.removeEntry(this.name).catch(() => {});
  }
}

/**
 * Reads byte ranges of one OPFS file, as `getFile().slice(a, b).arrayBuffer()` on the snapshot
 * taken when the stream opened (a later change of the file makes reads fail, never mix versions).
 */
export class OpfsReadStream implements FileReadStream {
  /**
   * @param path - the file's `opfs://` path, for messages.
   * @param file - the snapshot.
   */
  constructor(
    private readonly path: string,
    private readonly file: OpfsFileSnapshot,
  ) {}

  async read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    assertReadRange(offset, length);
    throwIfAborted(signal);
    this.#assertInside(offset, length);
    try {
      return new Uint8Array(await this.file.slice(offset, offset + length).arrayBuffer());
    } catch (error) {
      throw opfsError(error, "read", this.path);
    }
  }

  /** @inheritDoc (one ranged read, then a copy into `target`: a `Blob` cannot read in place) */
  async readInto(offset: number, target: Uint8Array, signal?: AbortSignal): Promise<void> {
    target.set(await this.read(offset, target.byteLength, signal));
  }

  async size(signal?: AbortSignal): Promise<number> {
    throwIfAborted(signal);
    return this.file.size;
  }

  async close(): Promise<void> {}

  #assertInside(offset: number, length: number): void {
    if (offset + length > this.file.size) {
      throw new CheckpointError(
        "TRUNCATED",
        `Expected ${length} bytes at offset ${offset} of ${this.path}, but the file ends after ${Math.max(0, this.file.size - offset)} of them`,
      );
    }
  }
}
