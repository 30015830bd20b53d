import { CheckpointError, throwIfAborted } from "../errors.js";
import { assertReadRange } from "../validate.js";
import type { FileReadStream } from "./filesystem-base.js";
import { prefetchInOrder } from "./ordered-prefetch.js";
import type { CachedFileVersion, ReadCache } from "./read-cache.js";
import { readViaReadInto } from "./read-via-read-into.js";

/** Blocks one read fetches (or reads from disk) at once. */
export const BLOCKS_IN_FLIGHT = 4;

/** How a {@link CachedReadStream} reaches its file at the source. */
export interface CachedReadSource {
  /** The file, for error messages (e.g. `s3://bucket/key`, a URL). */
  readonly uri: string;
  /**
   * The file's id, version and size, asked once per stream (S3: a HEAD; HTTP: the pinned
   * identity). Failing (a file without a version to key by) fails every read of the stream.
   */
  identify(signal?: AbortSignal): Promise<CachedFileVersion>;
  /**
   * Reads `[start, end)` of the version `identify` named, failing for another version (S3 and HTTP:
   * `If-Match`), so bytes of a replaced file are never cached under the old version.
   */
  fetch(file: CachedFileVersion, start: number, end: number, signal?: AbortSignal): Promise<Uint8Array>;
}

/** The numbers of the blocks of `blockBytes` that `[offset, end)` touches, in order. */
function* blocksOf(offset: number, end: number, blockBytes: number): Generator<number> {
  for (let b = Math.floor(offset / blockBytes); b * blockBytes < end; b++) yield b;
}

/**
 * A {@link FileReadStream} served from a {@link ReadCache}: the file is identified once, then every
 * read is assembled from the cache's aligned blocks, each fetched from the source only when no
 * process on this machine has it yet. The backend-neutral half of S3's `CachedS3Reader` and the
 * HTTP backend's cached reads; a file system using it should declare `pieceBytes` of one block, so
 * large reads arrive in block-sized pieces read in parallel.
 * Memory: up to {@link BLOCKS_IN_FLIGHT} blocks per read while it runs.
 */
export class CachedReadStream implements FileReadStream {
  #file: Promise<CachedFileVersion> | undefined;

  /**
   * @param source - how to identify and fetch the file.
   * @param cache - the cache.
   * @param refresh - fetch every block this stream reads from the source and replace its cached
   *   copy (a stream opened with `refetch`: the cached bytes failed a check). @default false
   */
  constructor(
    readonly source: CachedReadSource,
    readonly cache: ReadCache,
    readonly refresh = false,
  ) {}

  /** The file's id, version and size (one `identify`, shared by every read of this stream). */
  identity(signal?: AbortSignal): Promise<CachedFileVersion> {
    this.#file ??= this.source.identify(signal);
    return this.#file;
  }

  /** @inheritDoc */
  async size(signal?: AbortSignal): Promise<number> {
    return (await this.identity(signal)).size;
  }

  /** @inheritDoc */
  read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    return readViaReadInto(this, offset, length, signal);
  }

  /**
   * @inheritDoc Blocks are fetched (or read from disk) in order, up to {@link BLOCKS_IN_FLIGHT} at
   * once (`prefetchInOrder`), each copied into `target` as it arrives.
   * @throws {@link CheckpointError} `TRUNCATED` for a range past the file's end; what the source's
   * `identify` and `fetch` throw.
   */
  async readInto(offset: number, target: Uint8Array, signal?: AbortSignal): Promise<void> {
    assertReadRange(offset, target.byteLength);
    throwIfAborted(signal);
    if (target.byteLength === 0) return;
    const file = await this.identity(signal);
    if (offset + target.byteLength > file.size)
      throw new CheckpointError(
        "TRUNCATED",
        `Expected ${target.byteLength} bytes at offset ${offset} of ${this.source.uri}, but the object has ${file.size} bytes`,
      );
    const fetch = (start: number, end: number) => this.source.fetch(file, start, end, signal);
    const bs = this.cache.blockBytes;
    const end = offset + target.byteLength;
    const copyBlock = async (b: number) => {
      const bytes = await this.cache.block(file, b, fetch, signal, this.refresh);
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
