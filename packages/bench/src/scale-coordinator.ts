import { execFile } from "node:child_process";
import { closeSync, openSync, readSync, writeSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { writeHeapSnapshot } from "node:v8";
import { DefaultSavePlanner, type ProcessGroup } from "@dcpjs/core";
import { rankFilePrefix } from "@dcpjs/core/extend";
import { coordinatePlans, type PlanMessage, planReply } from "@dcpjs/core/testing";
import { decodeWire, encodeWire } from "@dcpjs/redis";

/**
 * What the save's coordinator process holds and spends, measured in a process of its own that
 * receives only the gathered payloads — not the simulation's 4,096 virtual ranks, whose state
 * dicts and plans live in the world process. Times in CPU seconds of this process (all threads),
 * memory in MiB.
 */
export interface CoordinatorResult {
  /** RSS of the idle process with its modules loaded, after a collection: what any Node process costs. */
  readonly baseRssMiB: number;
  /** Peak RSS of the process through a first save's coordinator step (`process.resourceUsage().maxRSS`). */
  readonly peakRssMiB: number;
  /** Peak RSS less the idle process's: the coordinator's own peak. */
  readonly ownPeakMiB: number;
  /** Heap and array buffers held when the scatter starts (the global plan, metadata and plan cache, the prepared plans; the gathered plans' bytes let go as decoded, the replies made one at a time as sent), after a collection, less the idle process's. */
  readonly heldAtPeakMiB: number;
  /** The gathered messages' encoded bytes (each rank's binary plan, a view of the value read from Redis, let go once decoded). */
  readonly gatheredBytesMiB: number;
  /** Every rank's encoded finished plan in the replies, in all (`planReply`, made one at a time as the scatter sends them). */
  readonly replyBytesMiB: number;
  /** Heap and array buffers held after the step, the replies and gathered messages dropped: the plan cache (global plan, metadata skeleton), less the idle process's. */
  readonly cacheMiB: number;
  /** The gather's payloads decoded (`decodeWire`, one at a time as Redis hands them over). */
  readonly gatherDecodeS: number;
  /** `coordinatePlans`: the default planner's `createGlobalPlan` and the plan cache. */
  readonly coordinateS: number;
  /** `prepareGlobalPlan` (file prefixes, as the file-system writer) and every rank's `planReply` (its finished plan encoded, as the scatter reaches it). */
  readonly repliesS: number;
  /** The scatter's `encodeWire` of every reply, one at a time (the reply made just before). */
  readonly scatterEncodeS: number;
  /** A repeat save with unchanged plans: bytes gathered (every rank's hash message). */
  readonly repeatGatherBytes: number;
  /** A repeat save: the coordinator's planning — the cached global plan reused (`coordinatePlans`) and every rank's reply made (`planReply`). */
  readonly repeatCoordinatorS: number;
  /** A repeat save: the coordinator's wire codec — the hash messages decoded, the replies encoded. */
  readonly repeatWireS: number;
  /** The same two, wall-clock seconds. */
  readonly repeatWallS: number;
  /** A repeat save: the coordinator's replies, bytes (storage prefix only, per rank). */
  readonly repeatReplyBytes: number;
}

const run = promisify(execFile);
const SELF = fileURLToPath(import.meta.url);
const MIB = 2 ** 20;

/** This process's CPU time in seconds (user + system, every thread). */
function cpuS(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}

/**
 * Heap and array-buffer bytes in use at rest (NaN when the process has no `gc`): the least of three
 * readings 100 ms apart, each after a collection (V8 frees array buffers on a background thread
 * after a collection, so one reading may come too early).
 */
export async function memoryAtRest(): Promise<number> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return Number.NaN;
  let least = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 100));
    const { heapUsed, arrayBuffers } = process.memoryUsage();
    least = Math.min(least, heapUsed + arrayBuffers);
  }
  return least;
}

/** {@link memoryAtRest}, which the coordinator's process must be able to read (`--expose-gc`). */
async function heldBytes(): Promise<number> {
  const held = await memoryAtRest();
  if (Number.isNaN(held)) throw new Error("Expected --expose-gc in the coordinator process, got none");
  return held;
}

/**
 * Writes the gathered payloads (each rank's collective value, as `encodeWire` made it) to `file`,
 * length-prefixed, for {@link measureCoordinator}.
 *
 * @param file - the file to write.
 * @param payloads - every rank's payload, in rank order.
 */
export function writePayloads(file: string, payloads: readonly Uint8Array[]): void {
  const fd = openSync(file, "w");
  try {
    const head = Buffer.alloc(4);
    for (const p of payloads) {
      head.writeUInt32LE(p.byteLength);
      writeSync(fd, head);
      writeSync(fd, p);
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * Runs a first and a repeat save's coordinator step in a fresh Node process (this module as a
 * child, with `--expose-gc`) on the payloads {@link writePayloads} wrote.
 *
 * @param file - the payloads.
 * @param ranks - how many.
 */
export async function measureCoordinator(file: string, ranks: number): Promise<CoordinatorResult> {
  const { stdout } = await run(
    process.execPath,
    [...process.execArgv, "--expose-gc", SELF, file, String(ranks)],
    { maxBuffer: 1 << 20 },
  );
  return JSON.parse(stdout.trim().split("\n").at(-1)!) as CoordinatorResult;
}

/** The child's work: the coordinator's part of a first and a repeat save, as `save` runs it. */
async function coordinator(file: string, ranks: number): Promise<CoordinatorResult> {
  const planner = new DefaultSavePlanner();
  const group = { rank: 0, size: ranks } as ProcessGroup;
  const key = planner.planCacheKey();
  // Warm the codec's code paths on a value of the gather's shape, so the idle figure includes them.
  decodeWire(encodeWire({ ok: true, value: { message: { hash: "", globalId: "" }, checkpointId: "" } }));
  const base = await heldBytes();
  const baseRssMiB = process.memoryUsage().rss / MIB;

  // The gather: each rank's value decoded as Redis hands it over; the message keeps a view of it.
  let t0 = cpuS();
  const fd = openSync(file, "r");
  const head = Buffer.alloc(4);
  let messages: PlanMessage[] | undefined = [];
  let position = 0;
  try {
    for (let r = 0; r < ranks; r++) {
      readSync(fd, head, 0, 4, position);
      const bytes = Buffer.allocUnsafeSlow(head.readUInt32LE());
      readSync(fd, bytes, 0, bytes.byteLength, position + 4);
      position += 4 + bytes.byteLength;
      messages.push((decodeWire(bytes) as { value: { message: PlanMessage } }).value.message);
    }
  } finally {
    closeSync(fd);
  }
  const gatherDecodeS = cpuS() - t0;
  const gatheredBytes = messages.reduce((n, m) => n + (m.bytes?.byteLength ?? 0), 0);

  t0 = cpuS();
  const decided = coordinatePlans(messages, group, key, planner);
  const coordinateS = cpuS() - t0;
  if (decided.resend) throw new Error("expected a global plan");
  t0 = cpuS();
  const prepared = decided.plans.map((plan, r) => ({ ...plan, storageData: { prefix: rankFilePrefix(r) } }));
  const repliesS0 = cpuS() - t0;
  // The fullest point after the reduce: the global plan, the metadata, the plan cache and the
  // prepared plans held; the gathered plans' bytes let go as `coordinatePlans` decoded them.
  const heldAtPeak = await heldBytes();
  const snapshotDir = process.env.DCPJS_SCALE_HEAP_SNAPSHOT;
  if (snapshotDir) writeHeapSnapshot(join(snapshotDir, `coordinator-${ranks}.heapsnapshot`));
  const globalId = decided.globalId;
  const hashes = messages.map((m) => m.hash!);
  // The scatter, as `save` runs it over the Redis group: each rank's reply made (`planReply`, its
  // finished plan encoded) when its turn comes, encoded on the wire, written and let go.
  let repliesS = repliesS0;
  let scatterEncodeS = 0;
  let replyBytes = 0;
  for (let r = 0; r < ranks; r++) {
    t0 = cpuS();
    const reply = planReply(r, prepared[r]!, decided, messages[r]!, group);
    const t1 = cpuS();
    replyBytes += reply.bytes?.byteLength ?? 0;
    encodeWire({ ok: true, value: reply });
    scatterEncodeS += cpuS() - t1;
    repliesS += t1 - t0;
  }
  messages = undefined;
  const peakRssMiB = process.resourceUsage().maxRSS / 1024;
  const cache = await heldBytes();

  // A repeat save with unchanged plans: every rank sends its hash and the id of the global plan it
  // holds; the coordinator reuses its cached global plan and replies with storage prefixes only.
  let repeatGatherBytes = 0;
  const repeatPayloads = hashes.map((hash) => {
    const payload = encodeWire({ ok: true, value: { message: { hash, globalId }, checkpointId: "/ckpt" } });
    repeatGatherBytes += payload.byteLength;
    return Buffer.from(payload);
  });
  const wall0 = performance.now();
  t0 = cpuS();
  const again = repeatPayloads.map(
    (p) => (decodeWire(p) as { value: { message: PlanMessage } }).value.message,
  );
  let repeatWireS = cpuS() - t0;
  t0 = cpuS();
  const reused = coordinatePlans(again, group, key, planner);
  if (reused.resend || !reused.reused) throw new Error("expected the cached global plan");
  const answers = reused.plans.map((plan, r) =>
    planReply(r, { ...plan, storageData: { prefix: rankFilePrefix(r) } }, reused, again[r]!, group),
  );
  const repeatCoordinatorS = cpuS() - t0;
  t0 = cpuS();
  let repeatReplyBytes = 0;
  for (const value of answers) repeatReplyBytes += encodeWire({ ok: true, value }).byteLength;
  repeatWireS += cpuS() - t0;
  const repeatWallS = (performance.now() - wall0) / 1000;

  return {
    baseRssMiB,
    peakRssMiB,
    ownPeakMiB: peakRssMiB - baseRssMiB,
    heldAtPeakMiB: (heldAtPeak - base) / MIB,
    gatheredBytesMiB: gatheredBytes / MIB,
    replyBytesMiB: replyBytes / MIB,
    cacheMiB: (cache - base) / MIB,
    gatherDecodeS,
    coordinateS,
    repliesS,
    scatterEncodeS,
    repeatGatherBytes,
    repeatCoordinatorS,
    repeatWireS,
    repeatWallS,
    repeatReplyBytes,
  };
}

// Run as a child: `scale-coordinator.ts <payloads file> <ranks>` prints one JSON line.
if (process.argv[1]?.endsWith("scale-coordinator.ts") && process.argv.length >= 4) {
  const [file, ranks] = process.argv.slice(2);
  console.log(JSON.stringify(await coordinator(file!, Number(ranks))));
}
