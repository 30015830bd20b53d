// The task a worker thread of storage/worker-pool.ts runs. Plain JavaScript (JSDoc-typed), so
// that it loads as it is — from the sources (tests, benchmarks) as from dist — with no
// TypeScript loader in the worker.
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { runOffloadTask } from "./offload-task.js";

/**
 * A task of offload-task.js (`runOffloadTask`), or a collection of this thread's whole heap
 * (`collect`, sent by the pool once it is idle). `epoch` counts the new shared memory the pool has
 * handed out (see `worker-pool.ts`): a task that brings a later one than the thread last saw has
 * the thread collect its young objects first.
 *
 * @typedef {(import("./offload-task.js").Task & { readonly epoch: number }) | { readonly kind: "collect" }} OffloadTask
 */

/**
 * This thread's garbage collector: V8's `gc` — the process's own when it runs with `--expose-gc`,
 * else taken from a fresh `vm` context created while the flag is set for that moment alone
 * (nodejs/node#16595; the flag is process-wide, so it is set back at once and no context created
 * later sees it); `undefined` where the runtime offers neither.
 *
 * @returns {((type: "minor" | "major") => void) | undefined} a collection of the young
 *   generation (cheap) or of the whole heap (costlier; figures in docs/benchmarks.md).
 */
export function garbageCollector() {
  /** @type {unknown} */
  let gc = globalThis.gc;
  if (typeof gc !== "function")
    try {
      setFlagsFromString("--expose-gc");
      try {
        gc = runInNewContext("gc");
      } finally {
        setFlagsFromString("--no-expose-gc");
      }
    } catch {
      return undefined;
    }
  if (typeof gc !== "function") return undefined;
  const collect = gc;
  return (type) => collect({ type });
}

const collectGarbage = garbageCollector();

/** The latest `epoch` a task brought this thread. */
let epochSeen = 0;

/**
 * Runs one task.
 *
 * Why a worker collects at all: a `SharedArrayBuffer`'s memory lives while any thread holds an
 * object for it, and V8 counts shared memory as no thread's external memory
 * (`BackingStore::PerIsolateAccountingLength` is 0 for it), so only a thread's own allocations
 * start its collections — and a thread that only checks and copies shared memory allocates a few
 * KiB per task: left alone, it kept every buffer it was ever handed until it exited. Here, the
 * earlier tasks' objects are garbage when the next task starts; a task of a new `epoch` collects
 * them (young generation: they are never promoted, since no collection ran while they lived
 * but the ones here), and `collect` collects everything.
 *
 * @param {OffloadTask} task - the task.
 * @returns {number[] | boolean | undefined | Promise<{ running: number[], contentHash: string }> | Promise<string> | Promise<import("../formats/item-sums.js").ItemSums>} the
 *   running CRCs of a `checksum` task (and its content hash, with `hash`), the content hash of a
 *   `hash` task, a CRC per part of a `checksums` task, the CRCs and hashes of an `itemSums` task;
 *   nothing for a `copy` or a `cast`; for a
 *   `collect`, whether this thread could collect.
 */
export default function runTask(task) {
  if (task.kind === "collect") {
    collectGarbage?.("major");
    return collectGarbage !== undefined;
  }
  if (task.epoch > epochSeen) {
    epochSeen = task.epoch;
    collectGarbage?.("minor");
  }
  return runOffloadTask(task);
}
