// The task a worker thread of storage/worker-pool.ts runs. Plain JavaScript (JSDoc-typed), so
// that it loads as it is — from the sources (tests, benchmarks) as from dist — with no
// TypeScript loader in the worker.
import { runningChecksums } from "../formats/running-checksums.js";
import { stridedCopy } from "../model/strided-copy.js";

/**
 * A task: the running CRCs of some bytes (see `runningChecksums`), the CRCs of several parts (one
 * each, from scratch), or a box copy between two buffers. Its buffers are views of
 * `SharedArrayBuffer`s, which reach the worker shared, not copied.
 *
 * @typedef {{ readonly kind: "checksum", readonly algorithm: "crc32" | "crc32c", readonly bytes: Uint8Array, readonly blockBytes: number, readonly previous?: number }
 *   | { readonly kind: "checksums", readonly algorithm: "crc32" | "crc32c", readonly parts: readonly Uint8Array[] }
 *   | { readonly kind: "copy", readonly src: Uint8Array, readonly dst: Uint8Array, readonly copy: import("../model/strided-copy.js").StridedCopy }} OffloadTask
 */

/**
 * Runs one task.
 *
 * @param {OffloadTask} task - the task.
 * @returns {number[] | undefined} the running CRCs of a `checksum` task, a CRC per part of a
 *   `checksums` task; nothing for a `copy`.
 */
export default function runTask(task) {
  if (task.kind === "copy") {
    stridedCopy(task.src, task.dst, task.copy);
    return undefined;
  }
  // One block per part: one CRC each.
  if (task.kind === "checksums")
    return task.parts.flatMap((p) => runningChecksums(task.algorithm, p, Infinity));
  return runningChecksums(task.algorithm, task.bytes, task.blockBytes, task.previous);
}
