// The worker-pool interface of `storage/worker-pool.ts` in a browser: for now every checksum, copy
// and cast runs on the calling thread (what Node does below `workerMinBytes` too), so nothing is
// ever handed off: `runsOffThread` is false, and the `…OnWorker` functions compute in place.
import { CheckpointError } from "../errors.js";
import { type ChecksumAlgorithm, computeChecksum, runningChecksums } from "../formats/checksum.js";
import type { ChecksumOffload } from "../formats/item-format.js";
import { castBox } from "../model/cast-kernels.js";
import { type StridedCopy, stridedCopy } from "../model/strided-copy.js";

/**
 * A reader's or writer's `workerMinBytes` option, checked (as on Node): 1 MiB when absent.
 *
 * @param value - the option.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when it is not a number ≥ 0 (`Infinity` is one).
 */
export function resolveWorkerMinBytes(value: number | undefined): number {
  if (value === undefined) return 1024 * 1024;
  if (typeof value !== "number" || !(value >= 0))
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected workerMinBytes to be a number ≥ 0 (or Infinity), got ${String(value)}`,
    );
  return value;
}

/** Starts no worker: tasks run on the calling thread. */
export function startWorkers(): void {}

/**
 * Whether a task runs on a worker: never, here.
 *
 * @param _minBytes - the smallest task handed to a worker (bytes).
 * @param _bytes - the task's size (bytes).
 * @param _buffers - the memory it reads and writes.
 */
export function runsOffThread(_minBytes: number, _bytes: number, ..._buffers: Uint8Array[]): boolean {
  return false;
}

/**
 * A box copy (from `boxCopy`), on the calling thread.
 *
 * @param src - the source bytes.
 * @param dst - the destination bytes.
 * @param copy - the runs; they must lie inside both buffers.
 */
export async function copyOnWorker(src: Uint8Array, dst: Uint8Array, copy: StridedCopy): Promise<void> {
  stridedCopy(src, dst, copy);
}

/**
 * A box cast (from `boxCast`) between buffers of two dtypes, on the calling thread (`castBox`).
 *
 * @param srcDtype - the source's dtype (torch's name).
 * @param src - the source bytes.
 * @param dstDtype - the destination's dtype.
 * @param dst - the destination bytes.
 * @param copy - the box, in elements; it must lie inside both buffers.
 * @throws Error when the pair cannot be cast (`castRefusal`).
 */
export async function castOnWorker(
  srcDtype: string,
  src: Uint8Array,
  dstDtype: string,
  dst: Uint8Array,
  copy: StridedCopy,
): Promise<void> {
  castBox(srcDtype, src, dstDtype, dst, copy);
}

/** Nothing to collect: there are no workers. @returns `true`. */
export async function collectWorkerHeaps(): Promise<boolean> {
  return true;
}

/** Worker threads running now: none. */
export function workerThreadsRunning(): number {
  return 0;
}

/**
 * The worker pool as item formats see it when they verify what a reader read: everything on the
 * calling thread.
 *
 * @param _minBytes - the smallest task handed to a worker (bytes).
 */
export function checksumOffload(_minBytes: number): ChecksumOffload {
  return {
    runsOffThread: () => false,
    runningChecksums: async (algorithm: ChecksumAlgorithm, bytes, blockBytes, previous) =>
      runningChecksums(algorithm, bytes, blockBytes, previous),
    checksums: async (algorithm, parts) => parts.map((part) => computeChecksum(algorithm, part)),
  };
}
