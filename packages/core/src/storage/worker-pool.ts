import { availableParallelism } from "node:os";
import { Piscina } from "piscina";
import { CheckpointError } from "../errors.js";
import { type ChecksumAlgorithm, computeChecksum } from "../formats/checksum.js";
import type { ChecksumOffload } from "../formats/item-format.js";
import type { ItemSums } from "../formats/item-sums.js";
import type { StridedCopy } from "../model/strided-copy.js";
import type { OffloadTask } from "./offload-worker.js";
import { resolveWorkerMinBytes, WORKER_MIN_BYTES, WORKER_MIN_PART_BYTES } from "./worker-limits.js";

export { resolveWorkerMinBytes, WORKER_MIN_BYTES, WORKER_MIN_PART_BYTES };

/**
 * How long an idle worker thread waits for the next task before it exits (ms): long enough to
 * outlast the gaps between the saves and loads of a busy process (a worker is slow to start, see
 * docs/benchmarks.md). Idle workers never keep the process alive.
 */
const WORKER_IDLE_MS = 60_000;

/**
 * How long the pool waits, once no task is in flight, before it has each worker thread collect its
 * heap (ms): a worker keeps every `SharedArrayBuffer` it was handed alive until it collects
 * (`offload-worker.js`), so this is how long the memory of tensors and staging buffers a load or
 * save let go can outlive it. Long enough not to fall between the tasks of one save or load.
 */
export const WORKER_COLLECT_MS = 200;

/**
 * New shared memory handed to the workers (bytes of `SharedArrayBuffer`s no task brought before)
 * between two collections of their young objects: each worker collects (cheaply) before its
 * next task, so the buffers the process has let go meanwhile do not pile up in them while tasks
 * keep coming. 32 MiB.
 */
export const WORKER_GC_BYTES = 32 * 1024 * 1024;

/** What a worker task answers (see `offload-worker.js`). */
type WorkerAnswer = number[] | boolean | undefined | ChecksumsAndHash | string | ItemSums;

let pool: Piscina<OffloadTask, WorkerAnswer> | undefined;
let maxThreads = availableParallelism();

/**
 * Caps the worker threads this thread's pool starts (before its first task; a running pool keeps
 * its cap). `asyncSave`'s save thread takes one fewer than the cores, leaving one to training.
 *
 * @param threads - the most worker threads, at least 1. @default one per core
 */
export function limitWorkerThreads(threads: number): void {
  maxThreads = Math.max(1, Math.floor(threads));
}
let tasksRun = 0;
let inFlight = 0;
/** Whether tasks have handed shared memory to the workers since their last collection. */
let handed = false;
let collectTimer: NodeJS.Timeout | undefined;
/** The buffers tasks have brought so far, and the new bytes among them since the epoch began. */
const known = new WeakSet<ArrayBufferLike>();
let newBytes = 0;
let epoch = 0;

/**
 * The process's worker threads (`piscina`), started on first use: up to one per core (with one
 * fewer, a resharded load's copies queued on a single worker while a core idled, see
 * docs/benchmarks.md); idle threads do not keep the process alive and exit after
 * {@link WORKER_IDLE_MS}.
 */
function workers(): Piscina<OffloadTask, WorkerAnswer> {
  pool ??= new Piscina({
    filename: new URL("./offload-worker.js", import.meta.url).href,
    minThreads: 0,
    maxThreads,
    idleTimeout: WORKER_IDLE_MS,
    // The worker's code is plain JavaScript: it needs none of this process's flags or loaders
    // (a TypeScript loader would slow each worker's start).
    execArgv: [],
  });
  return pool;
}

/**
 * Starts the first worker thread now, if none is running, so that it is ready by the time a
 * save's or a load's first large item is checked (its start overlaps the reads and
 * writes). Readers and writers call it when a plan has an item of `workerMinBytes` or more.
 */
export function startWorkers(): void {
  const threads = workers();
  if (threads.threads.length > 0) return;
  threads
    .run({ kind: "checksum", algorithm: "crc32", bytes: WARM_UP, blockBytes: Infinity, epoch: 0 })
    .catch(() => {});
}

const WARM_UP = new Uint8Array(new SharedArrayBuffer(1));

/**
 * Whether a task of `bytes` bytes over these buffers runs on a worker thread: when it is at least
 * `minBytes` and every buffer lies in a `SharedArrayBuffer` — memory a worker reads and writes
 * without a copy (`emptyTensor` allocates there; so do readers' staging buffers for tensor items).
 *
 * @param minBytes - the smallest task handed to a worker (bytes); `Infinity`: none.
 * @param bytes - the task's size (bytes).
 * @param buffers - the memory it reads and writes.
 */
export function runsOffThread(minBytes: number, bytes: number, ...buffers: Uint8Array[]): boolean {
  return bytes >= minBytes && buffers.every(inSharedMemory);
}

/** Whether a view's bytes lie in a `SharedArrayBuffer`. */
function inSharedMemory(view: Uint8Array): boolean {
  return view.buffer instanceof SharedArrayBuffer;
}

/**
 * The checksum of bytes in shared memory, computed on a worker thread.
 *
 * @param algorithm - which CRC.
 * @param bytes - the bytes, in a `SharedArrayBuffer`.
 * @returns the unsigned 32-bit CRC.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when `bytes` are not in a `SharedArrayBuffer`.
 */
export async function checksumOnWorker(algorithm: ChecksumAlgorithm, bytes: Uint8Array): Promise<number> {
  return (await runningChecksumsOnWorker(algorithm, bytes, Number.POSITIVE_INFINITY))[0]!;
}

/**
 * The running checksums of bytes in shared memory at each block end (`runningChecksums`),
 * computed on a worker thread.
 *
 * @param algorithm - which CRC.
 * @param bytes - the bytes, in a `SharedArrayBuffer`.
 * @param blockBytes - block size (bytes), > 0; `Infinity` for one block.
 * @param previous - the running checksum of the bytes before these; absent: from scratch.
 * @returns one unsigned 32-bit CRC per block.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when `bytes` are not in a `SharedArrayBuffer`.
 */
export async function runningChecksumsOnWorker(
  algorithm: ChecksumAlgorithm,
  bytes: Uint8Array,
  blockBytes: number,
  previous?: number,
): Promise<number[]> {
  assertShared("bytes to checksum", bytes);
  const task: OffloadTask =
    previous === undefined
      ? { kind: "checksum", algorithm, bytes, blockBytes, epoch: epochFor(bytes) }
      : { kind: "checksum", algorithm, bytes, blockBytes, previous, epoch: epochFor(bytes) };
  return (await runOnWorker(task)) as number[];
}

/** An item's running checksums and its content hash, computed by one pass of a worker over it. */
export interface ChecksumsAndHash {
  /** The running checksums at each block end (see {@link runningChecksumsOnWorker}). */
  readonly running: number[];
  /** Its content hash (`StorageInfo.contentHash`: XXH3-128, 32 lowercase hex digits). */
  readonly contentHash: string;
}

/**
 * An item's running checksums at each block end and its content hash
 * (`StorageInfo.contentHash`), computed by one worker task — what a writer records for a large
 * item in shared memory.
 *
 * @param algorithm - which CRC.
 * @param bytes - the item's bytes, in a `SharedArrayBuffer`.
 * @param blockBytes - block size (bytes), > 0; `Infinity` for one block.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when `bytes` are not in a `SharedArrayBuffer`.
 */
export async function checksumsAndHashOnWorker(
  algorithm: ChecksumAlgorithm,
  bytes: Uint8Array,
  blockBytes: number,
): Promise<ChecksumsAndHash> {
  assertShared("bytes to checksum", bytes);
  return (await runOnWorker({
    kind: "checksum",
    algorithm,
    bytes,
    blockBytes,
    hash: true,
    epoch: epochFor(bytes),
  })) as ChecksumsAndHash;
}

/**
 * The content hash (`StorageInfo.contentHash`) of bytes in shared memory, computed on a worker
 * thread — an incremental save's compare pass, which checksums only the items it then writes.
 *
 * @param bytes - the bytes, in a `SharedArrayBuffer`.
 * @returns XXH3-128 as 32 lowercase hex digits.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when `bytes` are not in a `SharedArrayBuffer`.
 */
export async function contentHashOnWorker(bytes: Uint8Array): Promise<string> {
  assertShared("bytes to hash", bytes);
  return (await runOnWorker({ kind: "hash", bytes, epoch: epochFor(bytes) })) as string;
}

/**
 * The CRC and content hash of each of several items laid end to end in one buffer of shared
 * memory (`itemSums`), computed by one worker task — a writer's batch of small items, copied into
 * a staging buffer, checksummed and hashed while the buffer is written.
 *
 * @param algorithm - which CRC.
 * @param bytes - the items, end to end, in a `SharedArrayBuffer`.
 * @param ends - each item's end (bytes from `bytes[0]`), ascending.
 * @returns a CRC per item and their XXH3-128 hashes concatenated (32 hex digits each).
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when `bytes` are not in a `SharedArrayBuffer`.
 */
export async function itemSumsOnWorker(
  algorithm: ChecksumAlgorithm,
  bytes: Uint8Array,
  ends: Uint32Array,
): Promise<ItemSums> {
  assertShared("bytes to checksum", bytes);
  return (await runOnWorker({
    kind: "itemSums",
    algorithm,
    bytes,
    ends,
    epoch: epochFor(bytes),
  })) as ItemSums;
}

/**
 * The most parts one `checksums` task carries. Posting a message costs Node time quadratic in the
 * `SharedArrayBuffer`s it holds (its serializer looks each one up in a list of those seen), so
 * thousands of tiny tensors, each its own buffer, go in several tasks of this many.
 */
export const WORKER_MAX_PARTS = 1024;

/**
 * The checksums of several parts in shared memory — e.g. the small items of one read run —
 * computed by one worker task per {@link WORKER_MAX_PARTS} parts: one round trip for all of them
 * instead of a CRC each on the calling thread.
 *
 * @param algorithm - which CRC.
 * @param parts - the bytes of each part, each in a `SharedArrayBuffer`.
 * @returns one unsigned 32-bit CRC per part, in order.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when a part is not in a `SharedArrayBuffer`.
 */
export async function checksumsOnWorker(
  algorithm: ChecksumAlgorithm,
  parts: readonly Uint8Array[],
): Promise<number[]> {
  for (const part of parts) assertShared("bytes to checksum", part);
  const tasks: Promise<number[]>[] = [];
  for (let at = 0; at < parts.length; at += WORKER_MAX_PARTS) {
    const some = parts.length <= WORKER_MAX_PARTS ? parts : parts.slice(at, at + WORKER_MAX_PARTS);
    tasks.push(
      runOnWorker({ kind: "checksums", algorithm, parts: some, epoch: epochFor(some) }) as Promise<number[]>,
    );
  }
  const sums = await Promise.all(tasks);
  return sums.length === 1 ? sums[0]! : sums.flat();
}

/**
 * Carries out a box copy (from `boxCopy`) between buffers in shared memory on a worker thread.
 *
 * @param src - the source bytes, in a `SharedArrayBuffer`.
 * @param dst - the destination bytes, in a `SharedArrayBuffer`.
 * @param copy - the runs; they must lie inside both buffers.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when `src` or `dst` is not in a
 * `SharedArrayBuffer` (a worker would copy into a copy of it).
 */
export async function copyOnWorker(src: Uint8Array, dst: Uint8Array, copy: StridedCopy): Promise<void> {
  assertShared("the source of a copy", src);
  assertShared("the destination of a copy", dst);
  await runOnWorker({ kind: "copy", src, dst, copy, epoch: epochFor(src, dst) });
}

/**
 * Carries out a box cast (from `boxCast`: in elements) between buffers of two dtypes in shared
 * memory on a worker thread, as `castBox` does on the calling thread.
 *
 * @param srcDtype - the source's dtype (torch's name).
 * @param src - the source bytes, in a `SharedArrayBuffer`.
 * @param dstDtype - the destination's dtype.
 * @param dst - the destination bytes, in a `SharedArrayBuffer`.
 * @param copy - the box, in elements; it must lie inside both buffers.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when `src` or `dst` is not in a
 * `SharedArrayBuffer`; the worker's Error when the pair cannot be cast (`castRefusal`).
 */
export async function castOnWorker(
  srcDtype: string,
  src: Uint8Array,
  dstDtype: string,
  dst: Uint8Array,
  copy: StridedCopy,
): Promise<void> {
  assertShared("the source of a cast", src);
  assertShared("the destination of a cast", dst);
  await runOnWorker({ kind: "cast", srcDtype, src, dstDtype, dst, copy, epoch: epochFor(src, dst) });
}

/**
 * The epoch a task over these buffers carries: a new one each time {@link WORKER_GC_BYTES} of
 * buffers no earlier task brought have been handed out — the memory that can become garbage.
 * Buffers used again (kept staging buffers, a tensor checked block by block) count once.
 */
function epochFor(...views: (Uint8Array | readonly Uint8Array[])[]): number {
  for (const { buffer } of views.flat()) {
    if (known.has(buffer)) continue;
    known.add(buffer);
    newBytes += buffer.byteLength;
  }
  if (newBytes >= WORKER_GC_BYTES) {
    newBytes = 0;
    epoch++;
  }
  return epoch;
}

/**
 * Runs a task on a worker thread; once none is in flight for {@link WORKER_COLLECT_MS}, every
 * worker collects its heap, letting go of the shared memory the tasks brought.
 */
async function runOnWorker(task: OffloadTask): Promise<WorkerAnswer> {
  tasksRun++;
  inFlight++;
  handed = true;
  try {
    return await workers().run(task);
  } finally {
    if (--inFlight === 0) {
      if (collectTimer) collectTimer.refresh();
      else {
        collectTimer = setTimeout(collectIdleWorkers, WORKER_COLLECT_MS);
        collectTimer.unref();
      }
    }
  }
}

/** The idle collection: every worker collects, unless a task came since (its end comes back here). */
function collectIdleWorkers(): void {
  collectTimer = undefined;
  if (inFlight > 0 || !handed) return;
  collectWorkerHeaps().catch(() => {});
}

/**
 * Has each worker thread running now collect its whole heap, letting go of every
 * `SharedArrayBuffer` its earlier tasks brought — what the pool does by itself
 * {@link WORKER_COLLECT_MS} after its last task (for tests and benchmarks). One `collect` task
 * per thread: an idle pool hands one to each (piscina gives a task to a thread that has none).
 *
 * @returns whether every one could: `false` where the runtime offers no garbage collector to
 *   call (then that memory is let go only when an idle worker exits).
 */
export async function collectWorkerHeaps(): Promise<boolean> {
  handed = false;
  const threads = workerThreadsRunning();
  const done = await Promise.all(Array.from({ length: threads }, () => workers().run({ kind: "collect" })));
  return done.every((d) => d === true);
}

/** Worker threads running in this process now (for tests and benchmarks). */
export function workerThreadsRunning(): number {
  return pool?.threads.length ?? 0;
}

/**
 * Checksums, copies and casts handed to worker threads by this process so far (for tests and
 * benchmarks), those of `asyncSave`'s save thread included.
 */
export function workerTasksRun(): number {
  return tasksRun;
}

/**
 * Counts tasks another thread of this process handed to its own worker threads (`asyncSave`'s
 * save thread reports its own), so that {@link workerTasksRun} covers the whole process.
 *
 * @param n - the tasks run there since its last report.
 */
export function countWorkerTasksRun(n: number): void {
  tasksRun += n;
}

function assertShared(what: string, bytes: Uint8Array): void {
  if (!(bytes.buffer instanceof SharedArrayBuffer))
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected ${what} on a worker thread in a SharedArrayBuffer, got an ${bytes.buffer.constructor.name}`,
    );
}

/**
 * The worker pool as item formats see it when they verify what a reader read
 * (`ItemFormat.verify`): tasks of at least `minBytes` over shared memory run on a worker thread.
 * @param minBytes - the smallest task handed to a worker (bytes); `Infinity`: none.
 */
export function checksumOffload(minBytes: number): ChecksumOffload {
  return {
    // Not through runsOffThread(minBytes, bytes, ...buffers): a reader asks once per small item,
    // and each spread is an array.
    runsOffThread: (bytes, ...buffers) => bytes >= minBytes && buffers.every(inSharedMemory),
    runningChecksums: runningChecksumsOnWorker,
    checksumsAndHash: checksumsAndHashOnWorker,
    itemSums: itemSumsOnWorker,
    checksums: (algorithm, parts) =>
      tinyParts(parts)
        ? Promise.resolve(parts.map((part) => computeChecksum(algorithm, part)))
        : checksumsOnWorker(algorithm, parts),
  };
}

function tinyParts(parts: readonly Uint8Array[]): boolean {
  let bytes = 0;
  for (const part of parts) bytes += part.byteLength;
  return bytes < WORKER_MIN_PART_BYTES * parts.length;
}
