import { CheckpointError } from "../errors.js";

// When a task goes to a worker thread (Node) or a Web Worker (browsers): the same limits on both.

/**
 * The smallest checksum or box copy (bytes) a reader hands to a worker thread: a round trip to a
 * worker costs about as much as a 1 MiB CRC-32 on the calling thread (docs/benchmarks.md). 1 MiB.
 */
export const WORKER_MIN_BYTES = 1024 * 1024;

/**
 * A reader's or writer's `workerMinBytes` option, checked: {@link WORKER_MIN_BYTES} when absent.
 *
 * @param value - the option.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when it is not a number ≥ 0 (`Infinity` is one).
 */
export function resolveWorkerMinBytes(value: number | undefined): number {
  if (value === undefined) return WORKER_MIN_BYTES;
  if (typeof value !== "number" || !(value >= 0))
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected workerMinBytes to be a number ≥ 0 (or Infinity), got ${String(value)}`,
    );
  return value;
}

/**
 * Parts smaller than this on average (bytes) are checksummed on the calling thread even when
 * their run is large: handing a worker a part (its buffer posted, received, kept track of) costs
 * more than the CRC of a part this small. 1 KiB.
 */
export const WORKER_MIN_PART_BYTES = 1024;
