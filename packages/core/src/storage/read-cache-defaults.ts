// The read cache's defaults, apart from the cache (`read-cache.ts`, Node.js only) so that every
// platform's build exports them.

/** The cache's size bound when none is given: 10 GiB. */
export const DEFAULT_CACHE_MAX_BYTES = 10 * 1024 ** 3;
/** The cached block size when none is given: 8 MiB, s3torchconnector's range size. */
export const DEFAULT_CACHE_BLOCK_BYTES = 8 * 1024 * 1024;
/** A lock on a block whose holder has not refreshed it for this long is taken over, by default (ms). */
export const CACHE_LOCK_STALE_MS = 30_000;
