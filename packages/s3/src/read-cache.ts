// The S3 backend's name for core's machine-local block cache: the cache itself moved to core
// (`ReadCache`), shared with the HTTP backend; S3 keys its blocks by `bucket/key` and ETag.
import {
  CACHE_LOCK_STALE_MS,
  type CachedFileVersion,
  DEFAULT_CACHE_BLOCK_BYTES,
  DEFAULT_CACHE_MAX_BYTES,
  ReadCache,
  type ReadCacheOptions,
  type ReadCacheStats,
} from "@dcpjs/core/extend";

export { CACHE_LOCK_STALE_MS, DEFAULT_CACHE_BLOCK_BYTES, DEFAULT_CACHE_MAX_BYTES };

/** Options of {@link S3ReadCache}: core's `ReadCacheOptions`. */
export type S3ReadCacheOptions = ReadCacheOptions;

/** Counters of one {@link S3ReadCache} in this process: core's `ReadCacheStats`. */
export type S3ReadCacheStats = ReadCacheStats;

/** What one object is, for the cache, when it is named by its ETag alone (no `bucket/key`). */
export interface CachedObjectId {
  /** The ETag from HEAD, quotes included or not. */
  readonly etag: string;
  /** The object's size in bytes. */
  readonly size: number;
}

/**
 * A machine-local cache of S3 object bytes: core's {@link ReadCache} (aligned blocks in `cacache`,
 * fetched once per machine under a `proper-lockfile` lock, least-recently-used eviction within
 * `maxBytes`), whose blocks `CachedS3Reader` keys by `bucket/key` and ETag. Kept as the S3
 * backend's name for it; a folder may be shared with the HTTP backend's cache.
 */
export class S3ReadCache extends ReadCache {
  /**
   * @inheritDoc
   * Also takes an object named by its ETag and size alone (`{ etag, size }`), keyed by the ETag
   * without quotes.
   */
  override block(
    file: CachedFileVersion | CachedObjectId,
    index: number,
    fetch: (start: number, end: number) => Promise<Uint8Array>,
    signal?: AbortSignal,
  ): Promise<Uint8Array> {
    const version: CachedFileVersion =
      "etag" in file ? { id: "", version: file.etag.replaceAll('"', ""), size: file.size } : file;
    return super.block(version, index, fetch, signal);
  }
}
