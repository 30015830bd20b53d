import { CheckpointError } from "@dcpjs/core";
import {
  assertReadRange,
  type FileReadStream,
  prefetchInOrder,
  readViaReadInto,
  throwIfAborted,
} from "@dcpjs/core/extend";
import { assertObjectRef, checkInside, getRange, headObject, type S3ObjectRef } from "../ranged-get.js";
import type { CachedObjectId, S3ReadCache } from "../read-cache.js";

/** Blocks one read fetches (or reads from disk) at once. */
export const BLOCKS_IN_FLIGHT = 4;

/** The numbers of the blocks of `blockBytes` that `[offset, end)` touches, in order. */
function* blocksOf(offset: number, end: number, blockBytes: number): Generator<number> {
  for (let b = Math.floor(offset / blockBytes); b * blockBytes < end; b++) yield b;
}

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

  /**
   * @inheritDoc Blocks are fetched (or read from disk) in order, up to {@link BLOCKS_IN_FLIGHT} at
   * once (core's `prefetchInOrder`), each copied into `target` as it arrives.
   */
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
    const copyBlock = async (b: number) => {
      const bytes = await this.cache.block(object, b, fetch, signal);
      const from = Math.max(offset, b * bs);
      const to = Math.min(end, b * bs + bytes.byteLength);
      target.set(bytes.subarray(from - b * bs, to - b * bs), from - offset);
    };
    // Every block in flight settles before the read does (the caller may reuse `target`); the
    // first failure in order wins.
    for await (const _ of prefetchInOrder(blocksOf(offset, end, bs), copyBlock, BLOCKS_IN_FLIGHT));
  }

  /** @inheritDoc */
  async close(): Promise<void> {}
}
