import { CheckpointError } from "@dcpjs/core";
import { CachedReadStream, type ReadCache } from "@dcpjs/core/extend";
import { assertObjectRef, getRange, headObject, type S3ObjectRef } from "../ranged-get.js";

/** Blocks one read fetches (or reads from disk) at once: core's `BLOCKS_IN_FLIGHT`. */
export { BLOCKS_IN_FLIGHT } from "@dcpjs/core/extend";

/**
 * Reads an object through a read cache (an `S3ReadCache`, core's `ReadCache`): core's
 * `CachedReadStream` with one HEAD for its size and ETag, then every read served from the cache's
 * aligned blocks (keyed by `bucket/key` and ETag), each fetched from S3 (a ranged GET with
 * `If-Match`) only when no process on this machine has it yet. Reads of neighbouring items may
 * be combined by the caller; the file system declares `pieceBytes` of one block, so large reads
 * arrive in block-sized pieces read in parallel.
 * Memory: up to `BLOCKS_IN_FLIGHT` blocks per read while it runs.
 */
export class CachedS3Reader extends CachedReadStream {
  /**
   * @param ref - the object.
   * @param cache - the cache.
   * @param refresh - fetch from S3 and replace the cached blocks (see core's `CachedReadStream`). @default false
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` for an empty bucket or key.
   */
  constructor(ref: S3ObjectRef, cache: ReadCache, refresh = false) {
    assertObjectRef(ref);
    super(
      {
        uri: ref.uri,
        identify: async (signal) => {
          const { size, etag } = await headObject(ref, signal);
          if (!etag)
            throw new CheckpointError(
              "IO_ERROR",
              `Expected an ETag in the HEAD response for ${ref.uri} (the read cache keys blocks by it), got none`,
            );
          return { id: `${ref.bucket}/${ref.key}`, version: etag, size };
        },
        fetch: (file, start, end, signal) => getRange({ ...ref, ifMatch: file.version }, start, end, signal),
      },
      cache,
      refresh,
    );
  }
}
