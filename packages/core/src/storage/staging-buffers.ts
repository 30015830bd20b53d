import { isSharedMemory, SharedMemory, unrefTimer } from "#platform";

/**
 * Staging buffers for tensor items, kept between reads: a fresh buffer costs a page fault per
 * 4 KiB page on first use (a resharded load's main thread spent measurable time allocating, and
 * more in the kernel: docs/benchmarks.md), so buffers a read is done with are kept for the next —
 * across ranks, files and loads of this process — up to {@link STAGING_KEEP_BYTES}, and let go
 * {@link STAGING_KEEP_MS} after the last one was kept. They lie in shared memory, where worker
 * threads check and copy their bytes (`worker-pool.ts`).
 */

/** Most bytes of staging buffers kept for reuse, process-wide. 64 MiB. */
export const STAGING_KEEP_BYTES = 64 * 1024 * 1024;

/** How long kept staging buffers outlive the last one kept (ms): then all are let go. 5 s. */
export const STAGING_KEEP_MS = 5_000;

const kept: Uint8Array[] = [];
let keptBytes = 0;
let timer: ReturnType<typeof setTimeout> | undefined;

/**
 * A staging buffer of at least `length` bytes: a kept one (the smallest that fits), else a new
 * one, on a `SharedArrayBuffer`. Its contents are unspecified.
 *
 * @param length - bytes needed.
 */
export function takeStaging(length: number): Uint8Array {
  let best = -1;
  for (let i = 0; i < kept.length; i++) {
    const size = kept[i]!.byteLength;
    if (size >= length && (best < 0 || size < kept[best]!.byteLength)) best = i;
  }
  if (best < 0) return new Uint8Array(new SharedMemory(length));
  const [buffer] = kept.splice(best, 1);
  keptBytes -= buffer!.byteLength;
  return buffer!;
}

/**
 * Keeps a staging buffer nothing refers to any more for a later {@link takeStaging}, unless
 * that would keep more than {@link STAGING_KEEP_BYTES}, or it is not in shared memory (then it
 * is not one of {@link takeStaging}'s, and is left to the garbage collector).
 *
 * @param buffer - a buffer from {@link takeStaging}, whose bytes no item's value still views.
 */
export function keepStaging(buffer: Uint8Array): void {
  if (!isSharedMemory(buffer.buffer)) return;
  if (keptBytes + buffer.byteLength > STAGING_KEEP_BYTES) return;
  kept.push(buffer);
  keptBytes += buffer.byteLength;
  if (timer) clearTimeout(timer);
  timer = setTimeout(releaseStaging, STAGING_KEEP_MS);
  unrefTimer(timer);
}

/** Lets every kept staging buffer go (after {@link STAGING_KEEP_MS}; tests call it directly). */
export function releaseStaging(): void {
  kept.length = 0;
  keptBytes = 0;
  if (timer) clearTimeout(timer);
  timer = undefined;
}

/** Bytes of staging buffers kept now. */
export function stagingBytesKept(): number {
  return keptBytes;
}
