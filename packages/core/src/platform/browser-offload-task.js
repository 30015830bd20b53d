// The work a Web Worker of platform/browser-worker-pool.ts does, as one function that the main
// thread runs too (where there are no workers, or they failed to start). Plain JavaScript, like
// storage/offload-worker.js, Node's counterpart (which also collects garbage; browsers do that
// by themselves).
import { runningChecksums } from "../formats/running-checksums.js";
import { castBox } from "../model/cast-kernels.js";
import { stridedCopy } from "../model/strided-copy.js";

/**
 * A task: the running CRCs of some bytes (`runningChecksums`), the CRCs of several parts (one each,
 * from scratch), a box copy between two buffers, or a box cast between buffers of two dtypes
 * (`castBox`, its box in elements). Its buffers are views of `SharedArrayBuffer`s when it goes to
 * a worker, which then reads and writes them in place.
 *
 * @typedef {{ readonly kind: "checksum", readonly algorithm: "crc32" | "crc32c", readonly bytes: Uint8Array, readonly blockBytes: number, readonly previous?: number }
 *   | { readonly kind: "checksums", readonly algorithm: "crc32" | "crc32c", readonly parts: readonly Uint8Array[] }
 *   | { readonly kind: "copy", readonly src: Uint8Array, readonly dst: Uint8Array, readonly copy: import("../model/strided-copy.js").StridedCopy }
 *   | { readonly kind: "cast", readonly srcDtype: string, readonly src: Uint8Array, readonly dstDtype: string, readonly dst: Uint8Array, readonly copy: import("../model/strided-copy.js").StridedCopy }} BrowserTask
 */

/**
 * Runs one task.
 *
 * @param {BrowserTask} task - the task.
 * @returns {number[] | undefined} the running CRCs of a `checksum` task, a CRC per part of a
 *   `checksums` task; nothing for a `copy` or a `cast`.
 * @throws Error when a cast's pair of dtypes cannot be cast (`castRefusal`).
 */
export function runBrowserTask(task) {
  if (task.kind === "copy") {
    stridedCopy(task.src, task.dst, task.copy);
    return undefined;
  }
  if (task.kind === "cast") {
    castBox(task.srcDtype, task.src, task.dstDtype, task.dst, task.copy);
    return undefined;
  }
  if (task.kind === "checksums")
    return task.parts.flatMap((p) => runningChecksums(task.algorithm, p, Infinity));
  return runningChecksums(task.algorithm, task.bytes, task.blockBytes, task.previous);
}
