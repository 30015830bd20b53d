import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PerformanceObserver } from "node:perf_hooks";
import {
  DefaultLoadPlanner,
  DefaultSavePlanner,
  type Metadata,
  type ProcessGroup,
  type StateDict,
} from "@dcpjs/core";
import {
  encodeSavePlan,
  MetadataBuilder,
  metadataColumns,
  type SavePlan,
  SavePlanDecoder,
  savePlanColumns,
  type WriteResult,
  WriteResultColumnsBuilder,
  withWriteResults,
  writeResultsView,
} from "@dcpjs/core/extend";
import {
  coordinatePlans,
  createColumnarGlobalPlan,
  decodeMetadata,
  dedupSavePlanColumns,
  encodeMetadata,
  type PlanMessage,
  validateColumnarGlobalPlan,
} from "@dcpjs/core/testing";
import { decodeWire, encodeWire } from "@dcpjs/redis";
import { createXXHash128 } from "hash-wasm";
import {
  type CoordinatorResult,
  measureCoordinator,
  memoryAtRest,
  writePayloads,
} from "./scale-coordinator.js";

/** How the simulated world's tensors are laid out over its ranks. */
export type ScaleLayout = "fsdp" | "replicated";

/** One simulated world: its layout and size. */
export interface ScaleCase {
  /** FSDP-style (every tensor sharded along dim 0 over every rank) or replicated (every rank holds every tensor whole). */
  readonly layout: ScaleLayout;
  /** Virtual ranks. */
  readonly ranks: number;
  /** Tensors per rank's state dict. */
  readonly tensors: number;
}

/** What one simulated world measured, in CPU seconds of this process (all its threads), bytes and MiB. */
export interface ScaleResult extends ScaleCase {
  /** Chunks in the checkpoint's metadata. */
  readonly chunks: number;
  /** Write items in all local plans together (before dedup). */
  readonly items: number;
  /** Every rank's `DefaultSavePlanner` setUpPlanner + createLocalPlan, summed. */
  readonly localPlanS: number;
  /** Bytes the coordinator gathers: every rank's plan message (binary plan and hash) as the Redis process group encodes it. */
  readonly gatherBytes: number;
  /** Encoding every rank's plan (`encodeSavePlan`, its XXH3-128, the msgpack envelope; summed over ranks). */
  readonly gatherEncodeS: number;
  /** The coordinator decoding the gathered plans (envelope and `SavePlanDecoder`). */
  readonly gatherDecodeS: number;
  /** `dedupSavePlanColumns`. */
  readonly dedupS: number;
  /** `createColumnarGlobalPlan` on the dedup's result (index hints and the metadata's assembly). */
  readonly globalS: number;
  /** `validateColumnarGlobalPlan`. */
  readonly validateS: number;
  /** The save's coordinator step on the gathered plans (`coordinatePlans`: `DefaultSavePlanner.createGlobalPlan` and the plan cache), as a save runs it. */
  readonly coordinatorS: number;
  /** The same, in wall-clock seconds. */
  readonly coordinatorWallS: number;
  /**
   * The save's coordinator in a process of its own that receives only the gathered payloads: its
   * memory, a first save's steps, and a repeat save with unchanged plans.
   */
  readonly coordinator: CoordinatorResult;
  /** `withWriteResults`: a writer's `finish` adding every item's storage entry to the (columnar) global metadata. */
  readonly finishS: number;
  /** `encodeMetadata` of the metadata with one storage entry per chunk. */
  readonly encodeS: number;
  /** Size of the encoded `.metadata`. */
  readonly metadataBytes: number;
  /** `decodeMetadata`. */
  readonly decodeS: number;
  /** Memory the decoded metadata holds (heap and array buffers, after a collection), bytes; NaN without `--expose-gc`. */
  readonly decodedBytes: number;
  /** One rank's `DefaultLoadPlanner` setUpPlanner + createLocalPlan on freshly decoded metadata. */
  readonly loadPlanS: number;
  /** Another rank's, on the same metadata (what a planner may reuse from the first). */
  readonly loadPlanNextS: number;
  /** Read items of that rank's load plan. */
  readonly loadItems: number;
  /** Peak resident set size of this process (`process.resourceUsage().maxRSS`), MiB. */
  readonly peakRssMiB: number;
  /** Peak RSS of the world process through the coordinator step (every rank's local plan made before it, in this process; see `coordinator` for the coordinator's own). */
  readonly coordinatorPeakRssMiB: number;
  /** Heap and array buffers at rest after the coordinator step, holding what it holds: the gathered plans, the finished plans and the global metadata. */
  readonly coordinatorHeldMiB: number;
  /** Garbage-collection pauses (wall ms, main thread) in the dedup, global, validate, coordinator, decode and loadPlan phases. */
  readonly gcMs: Readonly<Record<string, number>>;
  /** Heap used once the gathered plans are decoded, MiB. */
  readonly heapGatheredMiB: number;
}

const COLS = 64;
/** Rows of a tensor per rank (FSDP) and of a whole tensor (replicated). */
const ROWS_PER_RANK = 2;
const REPLICATED_ROWS = 64;

function fqnOf(t: number): string {
  return `model.layers.${t}.mlp.weight`;
}

function shapeOf(c: ScaleCase): [number, number] {
  return c.layout === "fsdp" ? [c.ranks * ROWS_PER_RANK, COLS] : [REPLICATED_ROWS, COLS];
}

/**
 * One rank's state dict: its shard of every tensor (FSDP) or every tensor whole (replicated). All
 * tensors share one zeroed buffer of the right length: the planners never read tensor data.
 */
export function rankStateDict(c: ScaleCase, rank: number): StateDict {
  const shape = shapeOf(c);
  const sd: StateDict = {};
  if (c.layout === "fsdp") {
    const data = new Float32Array(ROWS_PER_RANK * COLS);
    for (let t = 0; t < c.tensors; t++) {
      sd[fqnOf(t)] = {
        dtype: "float32",
        shape,
        shards: [
          {
            offsets: [rank * ROWS_PER_RANK, 0],
            tensor: { dtype: "float32", shape: [ROWS_PER_RANK, COLS], data },
          },
        ],
      };
    }
  } else {
    const data = new Float32Array(shape[0] * shape[1]);
    for (let t = 0; t < c.tensors; t++) sd[fqnOf(t)] = { dtype: "float32", shape, data };
  }
  return sd;
}

/** This process's garbage collections: [start, duration] in ms (performance time). */
const collections: [number, number][] = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) collections.push([e.startTime, e.duration]);
}).observe({ entryTypes: ["gc"] });

/** Wall-clock windows of the phases whose GC time is reported: [start, end] in ms. */
const windows = new Map<string, [number, number]>();

/** Runs a phase, noting its wall-clock window under `name`. */
function windowed<T>(name: string, fn: () => T): T {
  const w0 = performance.now();
  try {
    return fn();
  } finally {
    windows.set(name, [w0, performance.now()]);
  }
}

/** The GC milliseconds in each noted window, once the observer has heard of every collection. */
async function gcPerWindow(): Promise<Record<string, number>> {
  await new Promise((resolve) => setTimeout(resolve, 50));
  const out: Record<string, number> = {};
  for (const [name, [w0, w1]] of windows) {
    let ms = 0;
    for (const [start, duration] of collections) if (start >= w0 && start < w1) ms += duration;
    out[name] = ms;
  }
  return out;
}

/** This process's CPU time in ms (user + system, every thread: the machine is shared, so wall time says less). */
function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

function seconds(t0: number): number {
  return (cpuMs() - t0) / 1000;
}

/**
 * What every rank's writer returns: one storage entry per planned item, rank r's in its own file —
 * made from the finished plans' columns, so that the plans' `WriteItem` objects are never made
 * (a rank's writer makes only its own; here every rank's are in one process).
 */
function writeResults(plans: readonly SavePlan[]): WriteResult[][] {
  return plans.map((plan, rank) => {
    let offset = 0;
    const c = savePlanColumns(plan)!;
    // As the writer keeps them: columns, with the public WriteResult[] a view over them.
    const results = new WriteResultColumnsBuilder(c.fqnIds.length);
    const file = results.fileId(`__${rank}_0.distcp`);
    for (let i = 0; i < c.fqnIds.length; i++) {
      const f = c.fqnIds[i]!;
      const nd = c.types[i] === 2 ? 0 : c.shapeStarts[f + 1]! - c.shapeStarts[f]!;
      const b = c.boxStarts[i]!;
      let length = 4;
      for (let d = 0; d < nd; d++) length *= c.boxes[b + nd + d]!;
      results.setSums(i, i, file, offset, length, "crc32", (offset * 2654435761) >>> 0, undefined);
      offset += length;
    }
    return writeResultsView(results.build(c));
  });
}

/**
 * The global plan's metadata as the coordinator builds it with `MetadataBuilder` (columns, no
 * object per chunk): tensors, chunks in order, planner data; no storage entries yet.
 */
function columnarOf(metadata: Metadata): Metadata {
  const b = new MetadataBuilder({ version: metadata.version, storageMeta: metadata.storageMeta });
  for (const [fqn, e] of metadata.stateDictMetadata) {
    if (e.type === "bytes") {
      b.addValue(fqn);
      continue;
    }
    const entry = b.addTensor(fqn, e.properties.dtype, e.size);
    for (const chunk of e.chunks) b.addChunk(entry, chunk.offsets, chunk.sizes);
  }
  for (const [fqn, path] of metadata.plannerData) b.setPath(fqn, path);
  return b.build();
}

/**
 * Runs one simulated world in this process: every virtual rank's local save plan, the gather as
 * the Redis process group serialises it, the coordinator's planning, `.metadata` encode and
 * decode, and load plans of two ranks. No tensor data is written or read.
 *
 * @param c - the world.
 */
export async function runScaleCase(c: ScaleCase): Promise<ScaleResult> {
  // Every rank's local plan, as its process would make it, and what it sends to the coordinator:
  // the save's plan message (the binary plan and its XXH3-128) in the collective's outcome, as the
  // Redis process group msgpacks it.
  const hasher = await createXXHash128();
  const hashOf = (bytes: Uint8Array) => {
    hasher.init();
    hasher.update(bytes);
    return hasher.digest("hex");
  };
  let localPlanS = 0;
  let gatherEncodeS = 0;
  let gatherBytes = 0;
  let items = 0;
  const payloads: Uint8Array[] = [];
  const hashes: string[] = [];
  for (let rank = 0; rank < c.ranks; rank++) {
    const sd = rankStateDict(c, rank);
    let t0 = cpuMs();
    const planner = new DefaultSavePlanner();
    planner.setUpPlanner(sd);
    const plan = planner.createLocalPlan();
    localPlanS += seconds(t0);
    items += savePlanColumns(plan)!.fqnIds.length;
    t0 = cpuMs();
    const bytes = encodeSavePlan(plan);
    const hash = hashOf(bytes);
    const message: PlanMessage = { bytes, hash };
    const payload = encodeWire({ ok: true, value: { message, checkpointId: "/ckpt" } });
    gatherEncodeS += seconds(t0);
    gatherBytes += payload.byteLength;
    payloads.push(payload);
    hashes.push(hash);
  }

  // The coordinator as a process of its own, holding only what it receives (before this process's
  // own phases fill its heap).
  const dir = await mkdtemp(join(tmpdir(), "dcpjs-scale-"));
  let coordinator: CoordinatorResult;
  try {
    writePayloads(join(dir, "payloads"), payloads);
    coordinator = await measureCoordinator(join(dir, "payloads"), c.ranks);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }

  let t0 = cpuMs();
  // The coordinator decodes each rank's payload as it arrives; the bytes are dropped once decoded.
  const decoder = new SavePlanDecoder();
  let all: SavePlan[] | undefined = payloads.map((p, r) => {
    const { message } = (decodeWire(p) as { value: { message: PlanMessage } }).value;
    payloads[r] = new Uint8Array(0);
    return decoder.decode(message.bytes!);
  });
  const gatherDecodeS = seconds(t0);
  payloads.length = 0;
  const heapGatheredMiB = process.memoryUsage().heapUsed / 2 ** 20;

  // The coordinator's phases one by one (their results dropped), then as a save runs them.
  const columns = all.map((p) => savePlanColumns(p)!);
  t0 = cpuMs();
  let deduped: ReturnType<typeof dedupSavePlanColumns> | undefined = windowed("dedup", () =>
    dedupSavePlanColumns(columns, false),
  );
  const dedupS = seconds(t0);
  t0 = cpuMs();
  let global: ReturnType<typeof createColumnarGlobalPlan> | undefined = windowed("global", () =>
    createColumnarGlobalPlan(
      columns,
      all!.map((p) => p.plannerData),
      false,
      deduped,
    ),
  );
  const globalS = seconds(t0);
  deduped = undefined;
  t0 = cpuMs();
  const problems = windowed("validate", () =>
    validateColumnarGlobalPlan(global!.entries, all!.length, global!.metadata),
  );
  const validateS = seconds(t0);
  global = undefined;
  if (problems.length > 0) throw new Error(`invalid plan: ${problems.slice(0, 3).join("; ")}`);

  // As a save's coordinator runs it: the plan cache of a process group (here a stand-in) is filled.
  const group = { rank: 0, size: c.ranks } as ProcessGroup;
  const coordinatorPlanner = new DefaultSavePlanner();
  const key = coordinatorPlanner.planCacheKey();
  t0 = cpuMs();
  const wall0 = performance.now();
  const decided = windowed("coordinator", () =>
    coordinatePlans(
      all!.map((plan, r) => ({ plan, hash: hashes[r]! })),
      group,
      key,
      coordinatorPlanner,
    ),
  );
  const coordinatorS = seconds(t0);
  const coordinatorWallS = (performance.now() - wall0) / 1000;
  if (decided.resend) throw new Error("expected a global plan");
  let coordinated: { plans: readonly SavePlan[]; metadata: Metadata } | undefined = decided;
  const coordinatorPeakRssMiB = process.resourceUsage().maxRSS / 1024;
  const coordinatorHeldMiB = (await memoryAtRest()) / 2 ** 20;
  all = undefined;

  let results: WriteResult[][] | undefined = writeResults(coordinated.plans);
  // Counted on the columns when there are some: reading `chunks` would build every chunk list.
  const counted = metadataColumns(coordinated.metadata);
  let chunks = counted ? counted.entryChunkStart[counted.fqns.length]! : 0;
  if (!counted)
    for (const e of coordinated.metadata.stateDictMetadata.values())
      if (e.type === "tensor") chunks += e.chunks.length;
  let global0: Metadata | undefined = metadataColumns(coordinated.metadata)
    ? coordinated.metadata
    : columnarOf(coordinated.metadata);
  coordinated = undefined;
  // The writer's finish adds every item's storage entry, then encodes. A collection first, so that
  // the marking of the heap the phases above left is not charged to it.
  await memoryAtRest();
  t0 = cpuMs();
  let metadata: Metadata | undefined = withWriteResults(global0, results);
  const finishS = seconds(t0);
  global0 = undefined;
  results = undefined;
  t0 = cpuMs();
  const bytes = encodeMetadata(metadata);
  const encodeS = seconds(t0);
  metadata = undefined;

  const before = await memoryAtRest();
  t0 = cpuMs();
  const decoded = windowed("decode", () => decodeMetadata(bytes));
  const decodeS = seconds(t0);
  const decodedBytes = (await memoryAtRest()) - before;

  const loadRank = (rank: number) => {
    const sd = rankStateDict(c, rank);
    const t = cpuMs();
    const planner = new DefaultLoadPlanner();
    planner.setUpPlanner(sd, decoded, false);
    const plan = planner.createLocalPlan();
    return { s: seconds(t), items: plan.items.length };
  };
  const first = windowed("loadPlan", () => loadRank(Math.min(1, c.ranks - 1)));
  const next = loadRank(c.ranks - 1);

  return {
    ...c,
    chunks,
    items,
    localPlanS,
    gatherBytes,
    gatherEncodeS,
    gatherDecodeS,
    dedupS,
    globalS,
    validateS,
    coordinatorS,
    coordinatorWallS,
    coordinator,
    finishS,
    encodeS,
    metadataBytes: bytes.byteLength,
    decodeS,
    decodedBytes,
    loadPlanS: first.s,
    loadPlanNextS: next.s,
    loadItems: first.items,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
    coordinatorPeakRssMiB,
    coordinatorHeldMiB,
    gcMs: await gcPerWindow(),
    heapGatheredMiB,
  };
}

// Run as a child: `scale-world.ts <layout> <ranks> <tensors>` prints one JSON line.
if (process.argv[1]?.endsWith("scale-world.ts") && process.argv.length >= 5) {
  const [layout, ranks, tensors] = process.argv.slice(2);
  console.log(
    JSON.stringify(
      await runScaleCase({ layout: layout as ScaleLayout, ranks: Number(ranks), tensors: Number(tensors) }),
    ),
  );
}
