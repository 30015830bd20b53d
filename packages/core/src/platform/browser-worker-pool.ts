// The worker-pool interface of `storage/worker-pool.ts` in a browser. In a cross-origin isolated
// page (`SharedArrayBuffer` offered), checksums and box copies and casts of `workerMinBytes` or
// more over shared memory run on a small pool of module Web Workers
// (`browser-offload-worker.js`), which read and write the memory in place; everywhere else — and
// for good once a worker fails to start — they run on the calling thread.
import { CheckpointError } from "../errors.js";
import { type ChecksumAlgorithm, computeChecksum } from "../formats/checksum.js";
import type { ChecksumOffload } from "../formats/item-format.js";
import type { StridedCopy } from "../model/strided-copy.js";
import { type BrowserTask, runBrowserTask } from "./browser-offload-task.js";

/** What this module uses of a page's globals (the package is typed without the DOM). */
interface WorkerLike {
  postMessage(message: unknown): void;
  terminate(): void;
  addEventListener(type: "message", listener: (event: { readonly data: Answer }) => void): void;
  addEventListener(type: "error", listener: (event: unknown) => void): void;
}
type Answer = { readonly id: number; readonly result?: number[] | undefined; readonly error?: unknown };
const page = globalThis as unknown as {
  readonly crossOriginIsolated?: boolean;
  readonly navigator?: { readonly hardwareConcurrency?: number };
  readonly Worker?: new (url: URL, options: { type: "module" }) => WorkerLike;
};

/** Whether tasks may go to Web Workers: shared memory and module workers are offered. */
const WORKERS =
  typeof SharedArrayBuffer === "function" &&
  page.crossOriginIsolated === true &&
  typeof page.Worker === "function";

/** Most workers: one per core the browser reports, as Node's pool has one thread per core. */
const MAX_WORKERS = Math.max(1, page.navigator?.hardwareConcurrency ?? 2);

/** Default `workerMinBytes` (bytes): as on Node, 1 MiB. */
const WORKER_MIN_BYTES = 1024 * 1024;

/**
 * Parts smaller than this on average (bytes) are checksummed on the calling thread even when
 * their run is large, as on Node. 1 KiB.
 */
const WORKER_MIN_PART_BYTES = 1024;

interface Slot {
  readonly worker: WorkerLike;
  inFlight: number;
}
interface Pending {
  readonly task: BrowserTask;
  readonly slot: Slot;
  readonly resolve: (value: number[] | undefined) => void;
  readonly reject: (error: unknown) => void;
}

const slots: Slot[] = [];
const pending = new Map<number, Pending>();
let nextId = 0;
/** Set once a worker failed to start or died: every task from then on runs on the calling thread. */
let broken = false;

/** A new worker, its answers settling the tasks sent to it. */
function spawn(): Slot {
  const worker = new page.Worker!(new URL("./browser-offload-worker.js", import.meta.url), {
    type: "module",
  });
  const slot: Slot = { worker, inFlight: 0 };
  worker.addEventListener("message", ({ data }) => {
    const task = pending.get(data.id);
    if (!task) return;
    pending.delete(data.id);
    slot.inFlight--;
    if ("error" in data)
      task.reject(data.error instanceof Error ? data.error : new Error(String(data.error)));
    else task.resolve(data.result);
  });
  worker.addEventListener("error", () => giveUpWorkers());
  slots.push(slot);
  return slot;
}

/** A worker failed: stop them all, and run what they held on the calling thread. */
function giveUpWorkers(): void {
  broken = true;
  for (const slot of slots.splice(0)) slot.worker.terminate();
  const held = [...pending.values()];
  pending.clear();
  for (const { task, resolve, reject } of held) {
    try {
      resolve(runBrowserTask(task));
    } catch (error) {
      reject(error);
    }
  }
}

/** Runs a task on the least busy worker (a new one while fewer than {@link MAX_WORKERS} are busy). */
function runOnWorker(task: BrowserTask): Promise<number[] | undefined> {
  if (broken || !WORKERS) return Promise.resolve().then(() => runBrowserTask(task));
  let slot = slots.reduce<Slot | undefined>((a, b) => (a && a.inFlight <= b.inFlight ? a : b), undefined);
  if (!slot || (slot.inFlight > 0 && slots.length < MAX_WORKERS)) slot = spawn();
  const id = nextId++;
  slot.inFlight++;
  return new Promise((resolve, reject) => {
    pending.set(id, { task, slot, resolve, reject });
    slot.worker.postMessage({ id, task });
  });
}

/**
 * A reader's or writer's `workerMinBytes` option, checked (as on Node): 1 MiB when absent.
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

/** Starts the first worker now, where there may be workers, so that it has loaded by the first large item. */
export function startWorkers(): void {
  if (WORKERS && !broken && slots.length === 0) spawn();
}

/**
 * Whether a task of `bytes` bytes over these buffers runs on a worker: where there may be
 * workers, when it is at least `minBytes` and every buffer lies in a `SharedArrayBuffer`.
 *
 * @param minBytes - the smallest task handed to a worker (bytes); `Infinity`: none.
 * @param bytes - the task's size (bytes).
 * @param buffers - the memory it reads and writes.
 */
export function runsOffThread(minBytes: number, bytes: number, ...buffers: Uint8Array[]): boolean {
  return (
    WORKERS && !broken && bytes >= minBytes && buffers.every((b) => b.buffer instanceof SharedArrayBuffer)
  );
}

/**
 * A box copy (from `boxCopy`) on a worker (on the calling thread where {@link runsOffThread} would
 * not hand it off).
 *
 * @param src - the source bytes.
 * @param dst - the destination bytes.
 * @param copy - the runs; they must lie inside both buffers.
 */
export async function copyOnWorker(src: Uint8Array, dst: Uint8Array, copy: StridedCopy): Promise<void> {
  await runOnWorker({ kind: "copy", src, dst, copy });
}

/**
 * A box cast (from `boxCast`) between buffers of two dtypes on a worker (`castBox`).
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
  await runOnWorker({ kind: "cast", srcDtype, src, dstDtype, dst, copy });
}

/**
 * Nothing to do: a browser collects its workers' garbage by itself (and offers pages no call to).
 *
 * @returns whether every worker could collect: `true` only when there are none.
 */
export async function collectWorkerHeaps(): Promise<boolean> {
  return slots.length === 0;
}

/** Web Workers running now. */
export function workerThreadsRunning(): number {
  return slots.length;
}

/**
 * The worker pool as item formats see it when they verify what a reader read: tasks of at least
 * `minBytes` over shared memory run on a worker (as on Node).
 *
 * @param minBytes - the smallest task handed to a worker (bytes); `Infinity`: none.
 */
export function checksumOffload(minBytes: number): ChecksumOffload {
  return {
    runsOffThread: (bytes, ...buffers) => runsOffThread(minBytes, bytes, ...buffers),
    runningChecksums: async (algorithm: ChecksumAlgorithm, bytes, blockBytes, previous) =>
      (await runOnWorker(
        previous === undefined
          ? { kind: "checksum", algorithm, bytes, blockBytes }
          : { kind: "checksum", algorithm, bytes, blockBytes, previous },
      ))!,
    checksums: async (algorithm, parts) => {
      let bytes = 0;
      for (const part of parts) bytes += part.byteLength;
      if (bytes < WORKER_MIN_PART_BYTES * parts.length)
        return parts.map((part) => computeChecksum(algorithm, part));
      return (await runOnWorker({ kind: "checksums", algorithm, parts }))!;
    },
  };
}
