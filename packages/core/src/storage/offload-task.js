// The work of an offload task — a checksum, a content hash, a box copy or cast — as one function
// that Node's worker threads (storage/offload-worker.js), browsers' Web Workers
// (platform/browser-offload-worker.js) and a page's own thread (where it has no workers) all run.
// Plain JavaScript (JSDoc-typed), so that it loads as it is in a worker, with no TypeScript loader.
import { contentHashOf, loadContentHasher, startContentHash } from "../formats/content-hash.js";
import { itemSums } from "../formats/item-sums.js";
import { runningChecksums } from "../formats/running-checksums.js";
import { castBox } from "../model/cast-kernels.js";
import { stridedCopy } from "../model/strided-copy.js";

/**
 * A task: the running CRCs of some bytes (see `runningChecksums`) — with `hash`, and their content
 * hash (`contentHashOf`, which every dcpjs save records) —, the content hash alone (`hash`: an
 * incremental save's compare pass), the CRCs of several parts (one each, from scratch), the CRC
 * and content hash of each of several items laid end to end in one buffer (`itemSums`: a writer's
 * batch of small items, their ends in bytes from the buffer's start), a box copy
 * between two buffers, or a box cast between buffers of two dtypes (`castBox`, its box in
 * elements). Its buffers are views of `SharedArrayBuffer`s when it goes to a worker, which reads
 * and writes them in place.
 *
 * @typedef {{ readonly kind: "checksum", readonly algorithm: "crc32" | "crc32c", readonly bytes: Uint8Array, readonly blockBytes: number, readonly previous?: number, readonly hash?: boolean }
 *   | { readonly kind: "hash", readonly bytes: Uint8Array }
 *   | { readonly kind: "checksums", readonly algorithm: "crc32" | "crc32c", readonly parts: readonly Uint8Array[] }
 *   | { readonly kind: "itemSums", readonly algorithm: "crc32" | "crc32c", readonly bytes: Uint8Array, readonly ends: Uint32Array }
 *   | { readonly kind: "copy", readonly src: Uint8Array, readonly dst: Uint8Array, readonly copy: import("../model/strided-copy.js").StridedCopy }
 *   | { readonly kind: "cast", readonly srcDtype: string, readonly src: Uint8Array, readonly dstDtype: string, readonly dst: Uint8Array, readonly copy: import("../model/strided-copy.js").StridedCopy }} Task
 */

/**
 * Runs one task.
 *
 * @param {Task} task - the task.
 * @returns {number[] | undefined | Promise<{ running: number[], contentHash: string }> | Promise<string> | Promise<import("../formats/item-sums.js").ItemSums>} the
 *   running CRCs of a `checksum` task (and its content hash, with `hash`), the content hash of a
 *   `hash` task, a CRC per part of a `checksums` task, the CRCs and hashes of an `itemSums` task;
 *   nothing for a `copy` or a `cast`.
 * @throws Error when a cast's pair of dtypes cannot be cast (`castRefusal`).
 */
export function runOffloadTask(task) {
  if (task.kind === "copy") {
    stridedCopy(task.src, task.dst, task.copy);
    return undefined;
  }
  if (task.kind === "cast") {
    castBox(task.srcDtype, task.src, task.dstDtype, task.dst, task.copy);
    return undefined;
  }
  if (task.kind === "hash") return hashOf(task.bytes);
  if (task.kind === "itemSums") return sumsOf(task.algorithm, task.bytes, task.ends);
  // One block per part: one CRC each.
  if (task.kind === "checksums")
    return task.parts.flatMap((p) => runningChecksums(task.algorithm, p, Infinity));
  if (task.hash) return checksumsAndHash(task.algorithm, task.bytes, task.blockBytes);
  return runningChecksums(task.algorithm, task.bytes, task.blockBytes, task.previous);
}

/**
 * The content hash of some bytes (the hasher loaded on first use).
 *
 * @param {Uint8Array} bytes - the bytes.
 * @returns {Promise<string>} XXH3-128, 32 lowercase hex digits.
 */
async function hashOf(bytes) {
  await loadContentHasher();
  return /** @type {string} */ (contentHashOf(bytes));
}

/**
 * The CRC and content hash of each item of a batch (`itemSums`; the hasher loaded on first use).
 *
 * @param {"crc32" | "crc32c"} algorithm - which CRC.
 * @param {Uint8Array} bytes - the items, end to end.
 * @param {Uint32Array} ends - each item's end.
 * @returns {Promise<import("../formats/item-sums.js").ItemSums>} their CRCs and hashes.
 */
async function sumsOf(algorithm, bytes, ends) {
  await loadContentHasher();
  return itemSums(algorithm, bytes, ends);
}

/**
 * The running CRCs and the content hash of an item's bytes (the hasher loaded on first use), in
 * one pass: each block goes to its CRC and then to the hash while it is still in the cache, so
 * that memory is read once, not twice (figures in docs/benchmarks.md, "What a fresh save pays").
 *
 * @param {"crc32" | "crc32c"} algorithm - which CRC.
 * @param {Uint8Array} bytes - the item's bytes.
 * @param {number} blockBytes - block size (bytes).
 * @returns {Promise<{ running: number[], contentHash: string }>} both.
 */
async function checksumsAndHash(algorithm, bytes, blockBytes) {
  await loadContentHasher();
  if (!(blockBytes < bytes.byteLength)) {
    const running = runningChecksums(algorithm, bytes, blockBytes);
    return { running, contentHash: /** @type {string} */ (contentHashOf(bytes)) };
  }
  const hash = /** @type {NonNullable<ReturnType<typeof startContentHash>>} */ (startContentHash());
  /** @type {number[]} */
  const running = [];
  /** @type {number | undefined} */
  let previous;
  for (let at = 0; at < bytes.byteLength; at += blockBytes) {
    const block = bytes.subarray(at, Math.min(at + blockBytes, bytes.byteLength));
    previous = runningChecksums(algorithm, block, Number.POSITIVE_INFINITY, previous)[0];
    running.push(/** @type {number} */ (previous));
    hash.update(block);
  }
  return { running, contentHash: hash.hex() };
}
