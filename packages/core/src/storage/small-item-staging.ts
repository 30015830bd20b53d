// A writer's small items, copied end to end into shared staging buffers so that a worker thread
// computes their CRCs and content hashes — one task per buffer — while the buffer is written.
import { ITEM_CHECKSUM_ALGORITHM } from "../formats/checksum.js";
import type { ChecksumOffload } from "../formats/item-format.js";
import { type ItemSums, itemSums } from "../formats/item-sums.js";

/** Most items in one staged batch: one worker task, one write (bounds a task's answer). */
export const STAGED_BATCH_ITEMS = 4096;

/**
 * What the CRC and content hash of one small item cost on the calling thread beyond its bytes,
 * counted as bytes against the writer's `workerMinBytes` when it decides whether a batch goes to a
 * worker: a hash call over a few bytes costs about as much as a CRC-32 of several KiB (figures in
 * docs/benchmarks.md). 8 KiB.
 */
export const ITEM_SUMS_OVERHEAD_BYTES = 8 * 1024;

/**
 * A file's small items are staged only where they weigh (as {@link ITEM_SUMS_OVERHEAD_BYTES}
 * counts) at least this many times the writer's `workerMinBytes` — 16 MiB by default, about 2,000
 * tiny items: a save of fewer would wait for a worker thread to start (in a fresh process) longer
 * than the calling thread takes to sum them. `workerMinBytes: 0` stages every file's.
 */
export const STAGING_MIN_TASKS = 16;

/** A batch taken from a {@link SmallItemStaging}: the bytes to write, and its items' sums. */
export interface StagedBatch {
  /** The batch's items end to end (a view of a staging buffer: written before it is reused). */
  readonly bytes: Uint8Array;
  /** Each item's end in {@link StagedBatch.bytes} (bytes), in order. */
  readonly ends: Uint32Array;
  /** Each item's CRC and content hash: on a worker thread where the batch is heavy enough. */
  readonly sums: Promise<ItemSums>;
  /**
   * Keeps the batch's buffer from reuse until `written` settles (and its sums are computed).
   * @param written - the write of {@link StagedBatch.bytes}.
   */
  hold(written: Promise<unknown>): void;
}

/**
 * Two staging buffers in shared memory for one data file's small items: while one is written and
 * its items checksummed and hashed (`itemSums`, by one worker task), the next batch is copied into
 * the other. The copy costs the calling thread less than the CRC-32 and XXH3-128 it moves off it.
 */
export class SmallItemStaging {
  readonly #buffers: [Uint8Array, Uint8Array];
  readonly #busy: [Promise<unknown> | undefined, Promise<unknown> | undefined] = [undefined, undefined];
  readonly #ends = new Uint32Array(STAGED_BATCH_ITEMS);
  readonly #offload: ChecksumOffload;
  readonly #minBytes: number;
  #current: 0 | 1 = 0;
  #fill = 0;
  #count = 0;

  /**
   * @param capacity - bytes per buffer (two are allocated, in `SharedArrayBuffer`s).
   * @param offload - the writer's worker threads; they must offer `itemSums`.
   * @param minBytes - the writer's `workerMinBytes`: a lighter batch is summed on this thread.
   */
  constructor(capacity: number, offload: ChecksumOffload, minBytes: number) {
    this.#buffers = [
      new Uint8Array(new SharedArrayBuffer(capacity)),
      new Uint8Array(new SharedArrayBuffer(capacity)),
    ];
    this.#offload = offload;
    this.#minBytes = minBytes;
  }

  /** Bytes per buffer: a larger item is never staged. */
  get capacity(): number {
    return this.#buffers[0].byteLength;
  }

  /** Items in the batch being gathered. */
  get items(): number {
    return this.#count;
  }

  /**
   * Whether an item of `bytes` fits in the batch being gathered.
   * @param bytes - its length.
   */
  fits(bytes: number): boolean {
    return this.#count < STAGED_BATCH_ITEMS && this.#fill + bytes <= this.capacity;
  }

  /** Settles once the buffer of the batch being gathered is free: call before its first item. */
  async ready(): Promise<void> {
    const busy = this.#busy[this.#current];
    if (busy === undefined) return;
    await busy;
    this.#busy[this.#current] = undefined;
  }

  /**
   * Copies an item into the batch (after {@link SmallItemStaging.ready}; it must fit).
   * @param data - the item's bytes.
   */
  add(data: Uint8Array): void {
    this.#buffers[this.#current].set(data, this.#fill);
    this.#fill += data.byteLength;
    this.#ends[this.#count++] = this.#fill;
  }

  /**
   * Takes the batch gathered (one item or more) and starts computing its sums: by one worker task
   * where the batch weighs `workerMinBytes` or more (its bytes, and
   * {@link ITEM_SUMS_OVERHEAD_BYTES} per item), else on this thread. The next batch is gathered
   * in the other buffer.
   */
  take(): StagedBatch {
    const index = this.#current;
    const bytes = this.#buffers[index].subarray(0, this.#fill);
    const ends = this.#ends.slice(0, this.#count);
    const weight = this.#fill + this.#count * ITEM_SUMS_OVERHEAD_BYTES;
    const sums =
      this.#offload.itemSums && weight >= this.#minBytes && this.#offload.runsOffThread(weight, bytes)
        ? this.#offload.itemSums(ITEM_CHECKSUM_ALGORITHM, bytes, ends)
        : Promise.resolve().then(() => itemSums(ITEM_CHECKSUM_ALGORITHM, bytes, ends));
    sums.catch(() => {}); // surfaced where the writer awaits it
    this.#current = index === 0 ? 1 : 0;
    this.#fill = 0;
    this.#count = 0;
    return {
      bytes,
      ends,
      sums,
      hold: (written) => {
        this.#busy[index] = Promise.allSettled([written, sums]);
      },
    };
  }
}
