import { type ChecksumAlgorithm, computeChecksum } from "../formats/checksum.js";
import type { ChecksumOffload } from "../formats/item-format.js";
import type { StridedCopy } from "../model/strided-copy.js";
import { resolveWorkerMinBytes, WORKER_MIN_PART_BYTES } from "../storage/worker-limits.js";
import { type BrowserTask, runBrowserTask } from "./browser-offload-task.js";

export { resolveWorkerMinBytes };

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

interface Slot {
  readonly worker: WorkerLike;
  inFlight: number;
}
interface Pending {
  readonly task: BrowserTask;
  readonly slot: Slot;
  readonly resolve: (value: unknown) => void;
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
      resolve(runBrowserTask(task) as unknown);
    } catch (error) {
      reject(error);
    }
  }
}

/** Runs a task on the least busy worker (a new one while fewer than {@link MAX_WORKERS} are busy). */
function runOnWorker(task: BrowserTask): Promise<unknown> {
  if (broken || !WORKERS) return Promise.resolve().then((): unknown => runBrowserTask(task));
  let slot = slots.reduce<Slot | undefined>((a, b) => (a && a.inFlight <= b.inFlight ? a : b), undefined);
  if (!slot || (slot.inFlight > 0 && slots.length < MAX_WORKERS)) slot = spawn();
  const id = nextId++;
  slot.inFlight++;
  return new Promise((resolve, reject) => {
    pending.set(id, { task, slot, resolve, reject });
    slot.worker.postMessage({ id, task });
  });
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
      )) as number[],
    checksums: async (algorithm, parts) => {
      let bytes = 0;
      for (const part of parts) bytes += part.byteLength;
      if (bytes < WORKER_MIN_PART_BYTES * parts.length)
        return parts.map((part) => computeChecksum(algorithm, part));
      return (await runOnWorker({ kind: "checksums", algorithm, parts })) as number[];
    },
  };
}

/**
 * The content hash (`StorageInfo.contentHash`) of bytes, as Node's `contentHashOnWorker`: on a
 * worker where the page has them (else on its own thread).
 *
 * @param bytes - the bytes.
 * @returns XXH3-128 as 32 lowercase hex digits.
 */
export async function contentHashOnWorker(bytes: Uint8Array): Promise<string> {
  return (await runOnWorker({ kind: "hash", bytes })) as string;
}
