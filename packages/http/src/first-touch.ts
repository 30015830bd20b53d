// The first touch of a load's fresh destination memory, on a worker thread: a tensor allocated by
// the load lies in pages the kernel maps (and zero-fills) on their first write. Written by the body
// copies, those page faults would cost the main thread about as much as the copies and the socket
// reads together; written once by a worker before the request is sent, they cost it nothing.
// Node only (node-transport.ts); a destination on an ordinary ArrayBuffer is left alone.
import { Worker } from "node:worker_threads";

/** Destination bytes (on `SharedArrayBuffer`s) below which one read's pages are not touched ahead (bytes). */
export const FIRST_TOUCH_MIN_BYTES = 1024 * 1024;

/** Bytes queued on the worker above which a read's pages are left to its copies (the worker is behind). */
export const FIRST_TOUCH_MAX_QUEUED_BYTES = 256 * 1024 * 1024;

/** The stride of the touches: one byte per page of the smallest page size (bytes). */
const PAGE_BYTES = 4096;

// One byte per page, read and written back atomically (`Atomics.add` of 0): a write, so the page is
// mapped, that never changes a value, even where the memory held data already (a load into
// existing shared tensors).
const WORKER_SOURCE = `
const { parentPort } = require("node:worker_threads");
parentPort.on("message", ({ id, parts }) => {
  for (const [buffer, offset, length] of parts) {
    const bytes = new Uint8Array(buffer, offset, length);
    for (let at = 0; at < length; at += ${PAGE_BYTES}) Atomics.add(bytes, at, 0);
  }
  parentPort.postMessage(id);
});
`;

/** The process's one first-touch worker: started on first use, unreferenced while idle. */
class FirstTouchWorker {
  readonly #worker: Worker;
  readonly #waiting = new Map<number, { resolve: () => void; bytes: number }>();
  #next = 0;
  #queuedBytes = 0;
  #online = false;
  #broken = false;

  constructor() {
    // no flags of the process (a loader such as tsx's): the worker runs nothing but WORKER_SOURCE
    this.#worker = new Worker(WORKER_SOURCE, { eval: true, execArgv: [], name: "dcpjs-http-first-touch" });
    this.#worker.unref();
    this.#worker.once("online", () => {
      this.#online = true;
    });
    this.#worker.on("message", (id: number) => this.#settle(id));
    // A worker that failed (it could not start, it ran out of memory) touches nothing more: the
    // copies map their pages themselves, as without it.
    const fail = () => {
      this.#broken = true;
      for (const id of [...this.#waiting.keys()]) this.#settle(id);
    };
    this.#worker.on("error", fail);
    this.#worker.on("exit", fail);
  }

  /** Whether it takes a read of `bytes` now: started, not failed, and not too far behind. */
  accepts(bytes: number): boolean {
    return this.#online && !this.#broken && this.#queuedBytes + bytes <= FIRST_TOUCH_MAX_QUEUED_BYTES;
  }

  touch(parts: readonly (readonly [SharedArrayBuffer, number, number])[], bytes: number): Promise<void> {
    const id = this.#next++;
    if (this.#waiting.size === 0) this.#worker.ref();
    this.#queuedBytes += bytes;
    return new Promise((resolve) => {
      this.#waiting.set(id, { resolve, bytes });
      this.#worker.postMessage({ id, parts });
    });
  }

  #settle(id: number): void {
    const waiting = this.#waiting.get(id);
    if (waiting === undefined) return;
    this.#waiting.delete(id);
    this.#queuedBytes -= waiting.bytes;
    if (this.#waiting.size === 0) this.#worker.unref();
    waiting.resolve();
  }
}

let worker: FirstTouchWorker | undefined;
/** Set when no worker could be started: nothing is touched ahead from then on. */
let unavailable = false;

/**
 * Maps the pages of a read's destinations on a worker thread before its body is copied there, so
 * that the kernel's page faults of fresh memory (a tensor the load just allocated) are not taken on
 * the main thread; every value is left as it was. Only destinations on a `SharedArrayBuffer` (core
 * allocates a load's tensors there, see its `emptyTensor`) of {@link FIRST_TOUCH_MIN_BYTES} or more
 * in all are touched, and only while the worker keeps up ({@link FIRST_TOUCH_MAX_QUEUED_BYTES}).
 * The caller must not write to the destinations before the returned promise settles.
 * @param targets - where a body will be copied.
 * @returns a promise that settles once the pages are mapped (it never rejects: a failed worker
 *   leaves them to the copies), or undefined when nothing was handed to the worker (its first
 *   call starts it and touches nothing).
 */
export function touchFirst(targets: readonly Uint8Array[]): Promise<void> | undefined {
  let bytes = 0;
  for (const t of targets) if (t.buffer instanceof SharedArrayBuffer) bytes += t.byteLength;
  if (bytes < FIRST_TOUCH_MIN_BYTES || unavailable) return undefined;
  try {
    worker ??= new FirstTouchWorker();
  } catch {
    unavailable = true;
    return undefined;
  }
  if (!worker.accepts(bytes)) return undefined;
  const parts = targets
    .filter((t) => t.buffer instanceof SharedArrayBuffer && t.byteLength > 0)
    .map((t) => [t.buffer as SharedArrayBuffer, t.byteOffset, t.byteLength] as const);
  return worker.touch(parts, bytes);
}
