import { CheckpointError } from "@dcpjs/core";
import { assertReadRange, type FileReadStream, readViaReadInto, throwIfAborted } from "@dcpjs/core/extend";
import { assertObjectRef, checkInside, getRange, headObject, type S3ObjectRef } from "../ranged-get.js";
import type { CachedObjectId, S3ReadCache } from "../read-cache.js";

/** Blocks one read fetches (or reads from disk) at once. */
export const BLOCKS_IN_FLIGHT = 4;

/**
 * Reads an object through an {@link S3ReadCache}: one HEAD for its size and ETag, then every read
 * is served from the cache's aligned blocks, each fetched from S3 (a ranged GET with `If-Match`)
 * only when no process on this machine has it yet. Reads of neighbouring items may be combined by
 * the caller; the file system declares `pieceBytes` of one block, so large reads arrive in
 * block-sized pieces read in parallel.
 * Memory: up to {@link BLOCKS_IN_FLIGHT} blocks per read while it runs.
 */
export class CachedS3Reader implements FileReadStream {
  #object: Promise<CachedObjectId> | undefined;

  /**
   * @param ref - the object.
   * @param cache - the cache.
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` for an empty bucket or key.
   */
  constructor(
    private readonly ref: S3ObjectRef,
    private readonly cache: S3ReadCache,
  ) {
    assertObjectRef(ref);
  }

  /** The object's ETag and size (one HEAD, shared by every read of this stream). */
  #identity(signal?: AbortSignal): Promise<CachedObjectId> {
    this.#object ??= headObject(this.ref, signal).then(({ size, etag }) => {
      if (!etag)
        throw new CheckpointError(
          "IO_ERROR",
          `Expected an ETag in the HEAD response for ${this.ref.uri} (the read cache keys blocks by it), got none`,
        );
      return { size, etag };
    });
    return this.#object;
  }

  /** @inheritDoc */
  async size(signal?: AbortSignal): Promise<number> {
    return (await this.#identity(signal)).size;
  }

  /** @inheritDoc */
  read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    return readViaReadInto(this, offset, length, signal);
  }

  /** @inheritDoc Blocks are fetched (or read from disk) in parallel. */
  async readInto(offset: number, target: Uint8Array, signal?: AbortSignal): Promise<void> {
    assertReadRange(offset, target.byteLength);
    throwIfAborted(signal);
    if (target.byteLength === 0) return;
    const object = await this.#identity(signal);
    checkInside(this.ref.uri, object.size, offset, target.byteLength);
    const ref: S3ObjectRef = { ...this.ref, ifMatch: object.etag };
    const fetch = (start: number, end: number) => getRange(ref, start, end, signal);
    const bs = this.cache.blockBytes;
    const end = offset + target.byteLength;
    const blocks: number[] = [];
    for (let b = Math.floor(offset / bs); b * bs < end; b++) blocks.push(b);
    const copyBlock = async (b: number) => {
      const bytes = await this.cache.block(object, b, fetch, signal);
      const from = Math.max(offset, b * bs);
      const to = Math.min(end, b * bs + bytes.byteLength);
      target.set(bytes.subarray(from - b * bs, to - b * bs), from - offset);
    };
    for (let i = 0; i < blocks.length; i += BLOCKS_IN_FLIGHT) {
      // Every block settles before the read does (the caller may reuse `target`); the first failure wins.
      const settled = await Promise.allSettled(blocks.slice(i, i + BLOCKS_IN_FLIGHT).map(copyBlock));
      const failed = settled.find((r) => r.status === "rejected");
      if (failed) throw failed.reason;
    }
  }

  /** @inheritDoc */
  async close(): Promise<void> {}
}
