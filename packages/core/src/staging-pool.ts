import { SharedMemory, unrefTimer } from "#platform";
/**
 * The shared memory that {@link asyncSave}'s staging copies tensors into, kept between saves: one
 * `SharedArrayBuffer` per process group (or, without one, per process), sliced into a view per
 * tensor, so that a save of the same state dict as the last one allocates nothing — as DCP's
 * `BlockingAsyncStager(cache_staged_state_dict=True)` keeps its staged copy. A fresh buffer costs a
 * page fault per 4 KiB page on its first copy; a kept one does not.
 *
 * Policy: a pool holds at most one buffer (saves on one group run one at a time). A save takes it
 * when it fits (at least the bytes needed, at most twice as many); otherwise the kept buffer is let
 * go and a new one of exactly the bytes needed is allocated — so a save with other shapes never
 * keeps the old buffer. A buffer given back is kept for the next save, and let go once its pool
 * has been idle {@link STAGING_POOL_IDLE_MS}, or with its process group (the pools are keyed
 * weakly).
 */

/** How long a pool keeps its buffer once the save that used it has settled (ms): 5 minutes. */
export const STAGING_POOL_IDLE_MS = 5 * 60_000;

/** The alignment of every tensor's view in a staging buffer (bytes): a cache line. */
export const STAGING_ALIGN = 64;

/** One process group's (or this process's) kept staging buffer. */
export class StagingPool {
  private kept: ArrayBufferLike | undefined;
  private lent: ArrayBufferLike | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** Buffers this pool has allocated so far. */
  allocations = 0;

  /** Bytes of shared memory this pool holds: the kept buffer and the one lent to a save. */
  get bytesHeld(): number {
    return (this.kept?.byteLength ?? 0) + (this.lent?.byteLength ?? 0);
  }

  /**
   * A buffer of at least `bytes` bytes, its contents unspecified: the kept one when it fits (at
   * most twice `bytes`), else a new one (the kept one is let go).
   *
   * @param bytes - bytes needed, > 0.
   * @param limit - the most bytes the buffer may hold when more than `bytes` (a kept one larger than
   *   this is let go). @default Infinity
   */
  take(bytes: number, limit = Number.POSITIVE_INFINITY): ArrayBufferLike {
    this.stopTimer();
    let buffer = this.kept;
    this.kept = undefined;
    const most = Math.max(bytes, Math.min(2 * bytes, limit));
    if (!buffer || buffer.byteLength < bytes || buffer.byteLength > most) {
      buffer = new SharedMemory(bytes);
      this.allocations++;
    }
    this.lent = buffer;
    return buffer;
  }

  /**
   * Takes back a buffer from {@link take} whose views nothing reads any more, to keep it for the
   * next save (until the pool has been idle {@link STAGING_POOL_IDLE_MS}).
   *
   * @param buffer - the buffer {@link take} returned.
   */
  give(buffer: ArrayBufferLike): void {
    if (this.lent === buffer) this.lent = undefined;
    this.kept = buffer;
    this.stopTimer();
    const timer = setTimeout(() => this.letGo(), STAGING_POOL_IDLE_MS);
    unrefTimer(timer); // the kept buffer does not keep the process alive
    this.timer = timer;
  }

  /** Lets the kept buffer go now (the idle timer's end; tests call it directly). */
  letGo(): void {
    this.stopTimer();
    this.kept = undefined;
  }

  private stopTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

const SINGLE_PROCESS_KEY = {};
const pools = new WeakMap<object, StagingPool>();

/**
 * The staging pool of a process group, or of this process when `processGroup` is undefined.
 *
 * @param processGroup - the save's process group, if any.
 */
export function stagingPoolFor(processGroup: object | undefined): StagingPool {
  const key = processGroup ?? SINGLE_PROCESS_KEY;
  let pool = pools.get(key);
  if (!pool) {
    pool = new StagingPool();
    pools.set(key, pool);
  }
  return pool;
}
