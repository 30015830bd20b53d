import { createHash } from "node:crypto";
import { statSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import type Cacache from "cacache";
import { CheckpointError } from "../errors.js";
import { retry } from "../retry.js";
import { assertIntegerInRange } from "../validate.js";

import {
  CACHE_LOCK_STALE_MS,
  DEFAULT_CACHE_BLOCK_BYTES,
  DEFAULT_CACHE_MAX_BYTES,
} from "./read-cache-defaults.js";

export { CACHE_LOCK_STALE_MS, DEFAULT_CACHE_BLOCK_BYTES, DEFAULT_CACHE_MAX_BYTES };

/** The first pause while another process fetches a block, before looking again (ms); it doubles. */
const LOCK_WAIT_MIN_MS = 5;
/** The longest pause while another process fetches a block (ms). */
const LOCK_WAIT_MAX_MS = 100;

/** Every block's key starts so (eviction passes over other entries of a shared folder). */
const KEY_PREFIX = "dcpjs-block:";

/** Another process holds a block's lock (it is fetching the block): wait, then look again. */
class BlockLocked extends Error {
  constructor(cause: unknown) {
    super("The block is being fetched by another process", { cause });
  }
}

/** Options of {@link ReadCache}. */
export interface ReadCacheOptions {
  /** The cache folder on local disk; processes that give the same folder share the cache. */
  readonly dir: string;
  /**
   * The most bytes of blocks kept: least recently used blocks are evicted until the cache fits (a
   * block being read stays readable in memory); see {@link ReadCache} for when.
   * @default 10 GiB ({@link DEFAULT_CACHE_MAX_BYTES})
   */
  readonly maxBytes?: number;
  /**
   * Objects are cached in aligned blocks of this many bytes (the last one shorter), so ranks that
   * read different but overlapping ranges share blocks; a read fetches at most one block more on
   * each side than it needs. 64 KiB – 1 GiB.
   * @default 8 MiB ({@link DEFAULT_CACHE_BLOCK_BYTES})
   */
  readonly blockBytes?: number;
  /**
   * A lock on a block whose holder has not refreshed it for this long (ms) — its process died
   * while fetching — is taken over by a waiting process. At least 2,000 (the holder refreshes it
   * every half of this).
   * @default 30,000 ({@link CACHE_LOCK_STALE_MS})
   */
  readonly lockStaleMs?: number;
}

/**
 * One version of one file, for the cache: blocks are keyed by all three, so a file whose version
 * changed (rewritten at the source) misses, and its old blocks are never served for it.
 */
export interface CachedFileVersion {
  /**
   * The file's name at its source, opaque to the cache (S3: `bucket/key`; HTTP: the URL without
   * its query string). Two backends must not produce the same id for different files.
   */
  readonly id: string;
  /** The content's identity at the source, opaque to the cache (S3: the ETag; HTTP: the pinned ETag, else Last-Modified). */
  readonly version: string;
  /** The file's size in bytes. */
  readonly size: number;
}

/** Counters of one {@link ReadCache} in this process. */
export interface ReadCacheStats {
  /** Blocks served from the local disk (or from a read in flight in this process). */
  hits: number;
  /** Blocks fetched from the source by this process. */
  fetches: number;
  /** Bytes fetched from the source by this process. */
  fetchedBytes: number;
  /** Cached blocks that failed their integrity check on read, were dropped and fetched again. */
  corrupt: number;
  /** Blocks evicted by this process to keep the bound. */
  evicted: number;
}

/** The cache's libraries: `cacache`, `proper-lockfile`, and `rm.entry` as {@link removeEntry}. */
interface StoreLibraries {
  readonly cacache: typeof Cacache;
  readonly lockfile: typeof import("proper-lockfile");
}

let libraries: Promise<StoreLibraries> | undefined;

/**
 * `cacache` and `proper-lockfile`, imported on first use rather than with the package: loading them
 * costs a process that never caches (every local load) a large share of importing `@dcpjs/core`
 * (docs/benchmarks.md, "What a fresh process pays").
 */
function storeLibraries(): Promise<StoreLibraries> {
  libraries ??= Promise.all([import("cacache"), import("proper-lockfile")]).then(([c, l]) => ({
    cacache: c.default,
    lockfile: l.default,
  }));
  return libraries;
}

/** `rm.entry` with `removeFully` (the index lines go too), which cacache 20 takes but its types omit. */
async function removeEntry(dir: string, key: string, options: { removeFully: boolean }): Promise<unknown> {
  const { cacache } = await storeLibraries();
  return (
    cacache.rm.entry as unknown as (d: string, k: string, o: { removeFully: boolean }) => Promise<unknown>
  )(dir, key, options);
}

const isCode = (error: unknown, ...codes: string[]) =>
  typeof error === "object" && error !== null && codes.includes((error as { code?: string }).code ?? "");

/** Checked up front, so that a wrong path fails as an argument, not as `ENOTDIR` mid-load. */
function assertFolderOrMissing(dir: string): void {
  let got: string;
  try {
    if (statSync(dir).isDirectory()) return;
    got = "a file";
  } catch (error) {
    if (isCode(error, "ENOENT")) return; // created on first use
    if (!isCode(error, "ENOTDIR")) throw error;
    got = "a path through a file";
  }
  throw new CheckpointError(
    "INVALID_ARGUMENT",
    `Expected cache dir ${dir} to be a folder (or not to exist yet), got ${got}`,
  );
}

/**
 * A machine-local cache of remote file bytes, in aligned blocks keyed by the file's id, version
 * (ETag), size and block index — backend-neutral: S3's `S3ReadCache` and the HTTP backend's
 * `cacheDir` are this cache, in the manner of s3torchconnector's local cache:
 * - storage is `cacache` (content-addressed; atomic writes through a temporary file and a rename;
 *   every read checked against the entry's SHA-512, a failed check drops the entry and refetches);
 * - processes sharing the folder fetch each block once: a missing block is fetched under a
 *   `proper-lockfile` lock (a `mkdir` lock, refreshed while held, taken over after `lockStaleMs`
 *   when its holder died) while the others wait and then read it from
 *   disk; in one process, concurrent reads of one block share one fetch;
 * - the cache stays within `maxBytes` by least-recently-used eviction (a hit refreshes the entry's
 *   time). A pass lists the whole index, so a process runs one when its running total passes the
 *   bound or its inserts since its last pass reach `maxBytes / 8`: one process keeps the cache
 *   within the bound; each other process inserting at the same time may add up to an eighth.
 * Keys change when a file is rewritten (its version changes), so a stale block is never served;
 * the backend's fetch must refuse bytes of another version (S3 and HTTP send `If-Match` with the
 * ETag), so bytes of a replaced file are never stored under the old one.
 */
export class ReadCache {
  /** The cache folder. */
  readonly dir: string;
  /** The size bound in bytes. */
  readonly maxBytes: number;
  /** The block size in bytes. */
  readonly blockBytes: number;
  /** When a dead holder's lock is taken over (ms). */
  readonly lockStaleMs: number;
  /** This process's counters. */
  readonly stats: ReadCacheStats = { hits: 0, fetches: 0, fetchedBytes: 0, corrupt: 0, evicted: 0 };
  readonly #inFlight = new Map<string, Promise<Uint8Array>>();
  #locks: Promise<string> | undefined;
  #eviction: Promise<void> = Promise.resolve();
  /** Bytes in the cache as of this process's last eviction pass, plus its inserts since (undefined before the first pass). */
  #estimate: number | undefined;
  /** Bytes this process inserted since its last eviction pass. */
  #sinceScan = 0;

  /**
   * @param options - see {@link ReadCacheOptions}.
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` for an empty `dir`, a `dir` that is a file
   * or lies under one (a missing folder is created on first use), `maxBytes` < 1, a `blockBytes`
   * outside 64 KiB – 1 GiB or a `lockStaleMs` < 2,000.
   */
  constructor(options: ReadCacheOptions) {
    if (typeof options.dir !== "string" || options.dir === "")
      throw new CheckpointError(
        "INVALID_ARGUMENT",
        `Expected cache dir to be a folder path, got ${options.dir}`,
      );
    assertFolderOrMissing(options.dir);
    this.dir = options.dir;
    this.maxBytes = options.maxBytes ?? DEFAULT_CACHE_MAX_BYTES;
    this.blockBytes = options.blockBytes ?? DEFAULT_CACHE_BLOCK_BYTES;
    this.lockStaleMs = options.lockStaleMs ?? CACHE_LOCK_STALE_MS;
    assertIntegerInRange("cache maxBytes", this.maxBytes, 1, Number.MAX_SAFE_INTEGER);
    assertIntegerInRange("cache blockBytes", this.blockBytes, 64 * 1024, 1024 ** 3);
    assertIntegerInRange("cache lockStaleMs", this.lockStaleMs, 2000);
  }

  /**
   * Block `index` of a file: `[index · blockBytes, min((index + 1) · blockBytes, size))`, from
   * disk, or fetched with `fetch` once across the processes sharing the folder, then stored.
   *
   * @param file - the file's id, version and size.
   * @param index - the block number, from 0.
   * @param fetch - reads `[start, end)` of that version of the file (failing for another
   *   version); called at most once here.
   * @param signal - aborts the wait for another process's fetch.
   * @param refresh - fetch it from the source even when cached (the cached copy failed a check
   *   upstream) and replace the cached copy. @default false
   * @returns the block's bytes (a fresh buffer the caller may keep).
   * @throws what `fetch` throws; `ABORTED` when `signal` fires while waiting.
   */
  block(
    file: CachedFileVersion,
    index: number,
    fetch: (start: number, end: number) => Promise<Uint8Array>,
    signal?: AbortSignal,
    refresh = false,
  ): Promise<Uint8Array> {
    // id and version are escaped, so that no `:` of theirs can make two files' keys equal.
    const key = `${KEY_PREFIX}${encodeURIComponent(file.id)}:${encodeURIComponent(file.version)}:${file.size}:${this.blockBytes}:${index}`;
    const running = this.#inFlight.get(key);
    if (running && !refresh) {
      this.stats.hits++;
      return running;
    }
    const start = index * this.blockBytes;
    const end = Math.min(start + this.blockBytes, file.size);
    const promise = this.#block(key, () => fetch(start, end), end - start, signal, refresh).finally(() => {
      if (this.#inFlight.get(key) === promise) this.#inFlight.delete(key);
    });
    this.#inFlight.set(key, promise);
    return promise;
  }

  async #block(
    key: string,
    fetch: () => Promise<Uint8Array>,
    length: number,
    signal: AbortSignal | undefined,
    refresh: boolean,
  ): Promise<Uint8Array> {
    const cached = refresh ? undefined : await this.#get(key, length);
    if (cached) return cached;
    const lockPath = join(await this.#lockDir(), createHash("sha256").update(key).digest("hex"));
    const { cacache, lockfile } = await storeLibraries();
    return retry(
      async (attempt) => {
        if (attempt > 1 && !refresh) {
          // Another process was fetching it: it may be on disk now.
          const filled = await this.#get(key, length);
          if (filled) return filled;
        }
        let release: () => Promise<void>;
        try {
          release = await lockfile.lock(lockPath, {
            realpath: false,
            stale: this.lockStaleMs,
            retries: 0,
            // Another process took the lock over as stale: at worst the block is fetched twice.
            onCompromised: () => {},
          });
        } catch (error) {
          throw isCode(error, "ELOCKED") ? new BlockLocked(error) : error;
        }
        try {
          const again = refresh ? undefined : await this.#get(key, length);
          if (again) return again;
          const bytes = await fetch();
          this.stats.fetches++;
          this.stats.fetchedBytes += bytes.byteLength;
          await cacache.put(this.dir, key, bytes, { size: bytes.byteLength });
          this.#evictSoon(bytes.byteLength);
          return bytes;
        } finally {
          await release().catch(() => {});
        }
      },
      {
        // No bound on attempts: the wait ends when the holder stores the block, or its lock goes
        // stale (`lockStaleMs`) and is taken over.
        attempts: Number.MAX_SAFE_INTEGER,
        minDelayMs: LOCK_WAIT_MIN_MS,
        maxDelayMs: LOCK_WAIT_MAX_MS,
        jitter: false,
        shouldRetry: (error) => error instanceof BlockLocked,
        ...(signal ? { signal } : {}),
      },
    );
  }

  /** The block from disk, verified (SHA-512 and length), its time refreshed; undefined on a miss. */
  async #get(key: string, length: number): Promise<Uint8Array | undefined> {
    const { cacache } = await storeLibraries();
    let got: Cacache.GetCacheObject;
    try {
      got = await cacache.get(this.dir, key);
    } catch (error) {
      if (isCode(error, "ENOENT")) return undefined;
      if (!isCode(error, "EINTEGRITY", "EBADSIZE")) throw error;
      this.stats.corrupt++;
      await removeEntry(this.dir, key, { removeFully: true }).catch(() => {});
      return undefined;
    }
    if (got.data.byteLength !== length) {
      this.stats.corrupt++;
      await removeEntry(this.dir, key, { removeFully: true }).catch(() => {});
      return undefined;
    }
    this.stats.hits++;
    // Least recently used: a new index line carries the time of this use; compacting the bucket
    // keeps only the newest line per key, so a block read a thousand times stays one line.
    await cacache.index
      .insert(this.dir, key, got.integrity, { size: got.data.byteLength })
      .then(() => cacache.index.compact(this.dir, key, (a, b) => a.key === b.key))
      .catch(() => {});
    return got.data;
  }

  #lockDir(): Promise<string> {
    this.#locks ??= mkdir(join(this.dir, "locks"), { recursive: true }).then(() => join(this.dir, "locks"));
    return this.#locks;
  }

  /**
   * Counts an insertion and queues an eviction pass (one at a time per process) when this
   * process's running total passes the bound, or its inserts since the last pass reach an eighth
   * of it — a pass lists the whole index, so it does not run for every block of a large cache.
   */
  #evictSoon(inserted: number): void {
    this.#sinceScan += inserted;
    if (this.#estimate !== undefined) this.#estimate += inserted;
    const due =
      this.#estimate === undefined || this.#estimate > this.maxBytes || this.#sinceScan >= this.maxBytes / 8;
    if (!due) return;
    this.#sinceScan = 0;
    this.#eviction = this.#eviction.then(
      () => this.evict().then(() => {}),
      () => {},
    );
  }

  /**
   * Evicts least recently used blocks until the cache holds at most `maxBytes`; content still
   * referenced by a kept entry stays. Runs as insertions call for it (see the class); callable to
   * trim by hand.
   * @returns the bytes evicted.
   */
  async evict(): Promise<number> {
    const { cacache } = await storeLibraries();
    const entries = Object.values(await cacache.ls(this.dir)).filter((e) => e.key.startsWith(KEY_PREFIX));
    let total = entries.reduce((n, e) => n + (e.size ?? 0), 0);
    this.#estimate = total;
    if (total <= this.maxBytes) return 0;
    entries.sort((a, b) => a.time - b.time);
    const kept = new Map<string, number>();
    for (const e of entries) kept.set(e.integrity, (kept.get(e.integrity) ?? 0) + 1);
    let freed = 0;
    for (const e of entries) {
      if (total <= this.maxBytes) break;
      await removeEntry(this.dir, e.key, { removeFully: true }).catch(() => {});
      const left = (kept.get(e.integrity) ?? 1) - 1;
      kept.set(e.integrity, left);
      if (left === 0) await cacache.rm.content(this.dir, e.integrity).catch(() => {});
      total -= e.size ?? 0;
      freed += e.size ?? 0;
      this.stats.evicted++;
    }
    this.#estimate = total;
    return freed;
  }

  /** Resolves when the evictions queued so far have run (for tests and orderly exits). */
  async settled(): Promise<void> {
    await this.#eviction;
  }
}
