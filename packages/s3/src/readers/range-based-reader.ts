import { assertReadRange, type FileReadStream, throwIfAborted } from "@dcpjs/core/extend";
import { assertObjectRef, checkInside, getRange, headSize, type S3ObjectRef } from "../ranged-get.js";
import { Serialized } from "./serialized.js";

/** The read-ahead buffer of {@link RangeBasedS3Reader} when none is given: 8 MiB. */
export const DEFAULT_RANGE_BUFFER_BYTES = 8 * 1024 * 1024;

/**
 * Reads an object with ranged GETs, as s3torchconnector's `RangedS3Reader`: a read smaller than
 * the buffer loads `[offset, offset + bufferSize)` (clamped to the object) into a reusable buffer
 * and serves following reads from it; a read of at least `bufferSize` bytes is one ranged GET of
 * exactly that range. `bufferSize` 0 disables buffering. The size comes from one lazy HEAD.
 * Memory: one buffer of `bufferSize` bytes.
 */
export class RangeBasedS3Reader implements FileReadStream {
  readonly #serial = new Serialized();
  #size: Promise<number> | undefined;
  #buffer: Uint8Array = new Uint8Array(0);
  #bufferStart = 0;

  /**
   * @param ref - the object.
   * @param bufferSize - the read-ahead buffer in bytes.
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` for an empty bucket or key.
   */
  constructor(
    private readonly ref: S3ObjectRef,
    private readonly bufferSize: number,
  ) {
    assertObjectRef(ref);
  }

  /** @inheritDoc */
  size(signal?: AbortSignal): Promise<number> {
    this.#size ??= headSize(this.ref, signal);
    return this.#size;
  }

  /**
   * @inheritDoc
   * Calls run one at a time, in call order — except without a buffer (`bufferSize` 0), where each
   * read is its own ranged GET and reads run in parallel.
   */
  async read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    assertReadRange(offset, length);
    if (this.bufferSize === 0) return this.#read(offset, length, signal);
    return this.#serial.run(() => this.#read(offset, length, signal));
  }

  async #read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    throwIfAborted(signal);
    if (length === 0) return new Uint8Array(0);
    const size = await this.size(signal);
    checkInside(this.ref.uri, size, offset, length);
    if (length >= this.bufferSize) return getRange(this.ref, offset, offset + length, signal);
    const bufferEnd = this.#bufferStart + this.#buffer.byteLength;
    if (offset < this.#bufferStart || offset + length > bufferEnd) {
      this.#bufferStart = offset;
      this.#buffer = await getRange(this.ref, offset, Math.min(offset + this.bufferSize, size), signal);
    }
    return this.#buffer.slice(offset - this.#bufferStart, offset - this.#bufferStart + length);
  }

  /** @inheritDoc */
  async close(): Promise<void> {
    this.#buffer = new Uint8Array(0);
  }
}
