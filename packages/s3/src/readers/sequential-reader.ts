import { CheckpointError } from "@dcpjs/core";
import { assertReadRange, type FileReadStream, throwIfAborted } from "@dcpjs/core/extend";
import {
  assertObjectRef,
  type CheckedBody,
  checkInside,
  getChecked,
  headSize,
  type S3ObjectRef,
} from "../ranged-get.js";
import { Serialized } from "./serialized.js";

/**
 * Reads an object through one GET of the whole object, as s3torchconnector's
 * `SequentialS3Reader`, whose length is checked against a HEAD first (so that a short but
 * self-consistent response is retried, not mistaken for a damaged object): bytes are kept from offset 0 up to the furthest position read, so memory
 * grows to the object's size. Any position can be read, in any order.
 */
export class SequentialS3Reader implements FileReadStream {
  readonly #serial = new Serialized();
  #body: Promise<CheckedBody> | undefined;
  readonly #chunks: Uint8Array[] = [];
  #buffered = 0;

  /**
   * @param ref - the object.
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` for an empty bucket or key.
   */
  constructor(private readonly ref: S3ObjectRef) {
    assertObjectRef(ref);
  }

  /** HEAD for the object's size, then one GET that must deliver exactly that many bytes. */
  #open(signal?: AbortSignal): Promise<CheckedBody> {
    this.#body ??= headSize(this.ref, signal).then((size) =>
      getChecked(this.ref, undefined, undefined, signal, size),
    );
    return this.#body;
  }

  /** @inheritDoc */
  async size(signal?: AbortSignal): Promise<number> {
    return (await this.#open(signal)).length;
  }

  /** @inheritDoc Calls run one at a time, in call order. */
  async read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    assertReadRange(offset, length);
    return this.#serial.run(() => this.#read(offset, length, signal));
  }

  async #read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    throwIfAborted(signal);
    if (length === 0) return new Uint8Array(0);
    const body = await this.#open(signal);
    checkInside(this.ref.uri, body.length, offset, length);
    while (this.#buffered < offset + length) {
      throwIfAborted(signal);
      const chunk = await body.next();
      if (!chunk)
        throw new CheckpointError(
          "TRUNCATED",
          `Expected ${offset + length} bytes in ${this.ref.uri}, found ${this.#buffered}`,
        );
      this.#chunks.push(chunk);
      this.#buffered += chunk.byteLength;
    }
    const out = new Uint8Array(length);
    let pos = 0;
    for (const chunk of this.#chunks) {
      const start = Math.max(offset - pos, 0);
      const end = Math.min(offset + length - pos, chunk.byteLength);
      if (start < end) out.set(chunk.subarray(start, end), pos + start - offset);
      pos += chunk.byteLength;
      if (pos >= offset + length) break;
    }
    return out;
  }

  /** @inheritDoc */
  async close(): Promise<void> {
    const body = this.#body;
    this.#body = undefined;
    this.#chunks.length = 0;
    if (body) (await body.catch(() => undefined))?.destroy();
  }
}
