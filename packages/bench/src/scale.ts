import { execFile } from "node:child_process";
import { loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { ScaleLayout, ScaleResult } from "./scale-world.js";
import { runPython, torchVenvPython } from "./system.js";

const run = promisify(execFile);
const WORLD = fileURLToPath(new URL("./scale-world.ts", import.meta.url));
const PEER = fileURLToPath(new URL("../peers/scale_torch.py", import.meta.url));

/** Options of {@link scale}. */
export interface ScaleOptions {
  /** World sizes (virtual ranks). */
  readonly ranks: readonly number[];
  /** Tensors per rank's state dict. */
  readonly tensors: number;
  /** Layouts to run. */
  readonly layouts: readonly ScaleLayout[];
  /** Run PyTorch 2.13's planner functions beside (the cached venv). */
  readonly torch: boolean;
  /** The largest world PyTorch's column runs (its plans take about 2.8 KB per item). */
  readonly torchMaxRanks: number;
  /** V8 old-space limit of each world's process, in MiB. */
  readonly heapMib: number;
}

/** PyTorch's figures for one world (scale_torch.py's JSON line). */
type TorchResult = Partial<Record<keyof ScaleResult, number>>;

/** Runs one world in a fresh Node process, so its peak memory is its own. */
async function world(
  layout: ScaleLayout,
  ranks: number,
  tensors: number,
  heapMib: number,
): Promise<ScaleResult> {
  const { stdout } = await run(
    process.execPath,
    [
      ...process.execArgv,
      `--max-old-space-size=${heapMib}`,
      "--expose-gc",
      WORLD,
      layout,
      String(ranks),
      String(tensors),
    ],
    { maxBuffer: 16 << 20 },
  );
  return JSON.parse(stdout.trim().split("\n").at(-1)!) as ScaleResult;
}

const s = (x: number | undefined) => (x === undefined ? "" : x.toFixed(3));
const ms = (x: number | undefined) => (x === undefined ? "" : (x * 1000).toFixed(1));
const mb = (x: number | undefined) => (x === undefined ? "" : (x / 1e6).toFixed(1));
const int = (x: number | undefined) => (x === undefined ? "" : x.toFixed(0));

/** The table's rows: label, and how to show one side's figure. */
function rows(r: ScaleResult, t: TorchResult | undefined): [string, string, string][] {
  const both = (label: string, f: (x: TorchResult) => string): [string, string, string] => [
    label,
    f(r as unknown as TorchResult),
    t ? f(t) : "",
  ];
  const perChunk = (x: TorchResult) =>
    x.metadataBytes === undefined || !x.chunks ? "" : (x.metadataBytes / x.chunks).toFixed(1);
  const chunksPerS = (x: TorchResult) =>
    x.decodeS === undefined || !x.chunks ? "" : (x.chunks / x.decodeS / 1e6).toFixed(2);
  const planTotal = (x: TorchResult) =>
    x.dedupS === undefined ? "" : s(x.dedupS + (x.globalS ?? 0) + (x.validateS ?? 0));
  return [
    both("local plan, all ranks (s)", (x) => s(x.localPlanS)),
    both("gather (MB)", (x) => mb(x.gatherBytes)),
    both("gather bytes per item", (x) =>
      x.gatherBytes === undefined || !x.items ? "" : (x.gatherBytes / x.items).toFixed(1),
    ),
    both("gather encode, all ranks (s)", (x) => s(x.gatherEncodeS)),
    both("gather decode, coordinator (s)", (x) => s(x.gatherDecodeS)),
    both("dedup (s)", (x) => s(x.dedupS)),
    both("global plan (s)", (x) => s(x.globalS)),
    both("validation (s)", (x) => s(x.validateS)),
    both("dedup + global + validation (s)", planTotal),
    both("coordinator step as a save runs it (s)", (x) => s(x.coordinatorS)),
    [
      "  of which GC pauses (wall s)",
      s(((r.gcMs.dedup ?? 0) + (r.gcMs.global ?? 0) + (r.gcMs.validate ?? 0)) / 1000) +
        ` + ${s((r.gcMs.coordinator ?? 0) / 1000)}`,
      "",
    ],
    ["peak RSS of the world process through the coordinator step (MiB)", int(r.coordinatorPeakRssMiB), ""],
    ["coordinator's plans and metadata at rest, world process (MiB)", int(r.coordinatorHeldMiB), ""],
    ["coordinator process: gather decode (s)", s(r.coordinator.gatherDecodeS), ""],
    ["coordinator process: coordinatePlans (s)", s(r.coordinator.coordinateS), ""],
    ["coordinator process: replies made, finished plans encoded (s)", s(r.coordinator.repliesS), ""],
    ["coordinator process: scatter encode (s)", s(r.coordinator.scatterEncodeS), ""],
    ["coordinator process: idle RSS (MiB)", int(r.coordinator.baseRssMiB), ""],
    ["coordinator process: peak RSS (MiB)", int(r.coordinator.peakRssMiB), ""],
    ["coordinator process: own peak, RSS less idle (MiB)", int(r.coordinator.ownPeakMiB), ""],
    ["coordinator process: held when the scatter starts (MiB)", int(r.coordinator.heldAtPeakMiB), ""],
    ["gathered plans' bytes, let go as decoded (MiB)", int(r.coordinator.gatheredBytesMiB), ""],
    ["replies' encoded plans, made one at a time (MiB)", int(r.coordinator.replyBytesMiB), ""],
    ["coordinator process: plan cache at rest (MiB)", int(r.coordinator.cacheMiB), ""],
    ["repeat save: gather (bytes)", int(r.coordinator.repeatGatherBytes), ""],
    ["repeat save: coordinator planning (ms)", ms(r.coordinator.repeatCoordinatorS), ""],
    ["repeat save: coordinator wire codec (ms)", ms(r.coordinator.repeatWireS), ""],
    ["repeat save: both, wall (ms)", ms(r.coordinator.repeatWallS), ""],
    ["repeat save: replies (bytes)", int(r.coordinator.repeatReplyBytes), ""],
    both(".metadata (MB)", (x) => mb(x.metadataBytes)),
    both(".metadata bytes per chunk", perChunk),
    ["storage entries added (writer finish, s)", s(r.finishS), ""],
    both("metadata encode (s)", (x) => s(x.encodeS)),
    both("metadata decode (s)", (x) => s(x.decodeS)),
    ["  of which GC pauses (wall s)", s((r.gcMs.decode ?? 0) / 1000), ""],
    both("decode (M chunks/s)", chunksPerS),
    [
      "decoded metadata, bytes per chunk",
      Number.isFinite(r.decodedBytes) && r.chunks ? (r.decodedBytes / r.chunks).toFixed(1) : "",
      "",
    ],
    both("load plan, rank 1 (ms)", (x) => ms(x.loadPlanS)),
    ["  of which GC pauses (wall ms)", ms((r.gcMs.loadPlan ?? 0) / 1000), ""],
    both("load plan, last rank (ms)", (x) => ms(x.loadPlanNextS)),
    both("load plan read items", (x) => int(x.loadItems)),
    both("peak RSS (MiB)", (x) => int(x.peakRssMiB)),
  ];
}

function print(r: ScaleResult, t: TorchResult | undefined, load: string): void {
  const table = rows(r, t);
  const header: [string, string, string] = [
    "",
    "dcpjs",
    t ? `PyTorch ${(t as { torch?: string }).torch ?? ""}` : "",
  ];
  const w = [0, 1, 2].map((i) => Math.max(header[i]!.length, ...table.map((row) => row[i]!.length)));
  const line = (c: [string, string, string]) =>
    `${c[0].padEnd(w[0]!)}  ${c[1].padStart(w[1]!)}  ${c[2].padStart(w[2]!)}`;
  console.log(
    `\nscale layout=${r.layout} ranks=${r.ranks} tensors=${r.tensors} chunks=${r.chunks} items=${r.items} (CPU seconds; load average ${load})`,
  );
  console.log(line(header));
  for (const row of table) console.log(line(row));
}

/**
 * `pnpm bench scale`: simulated worlds of N virtual ranks, each in a fresh process — real
 * planners, the real `.metadata` codec and the Redis process group's serialisation, no tensor
 * data — beside PyTorch 2.13's planner functions on the same layout. Prints a table per world
 * and one JSON line of every figure.
 *
 * @param o - see {@link ScaleOptions}.
 */
export async function scale(o: ScaleOptions): Promise<void> {
  const python = o.torch ? await torchVenvPython() : undefined;
  const results: { dcpjs: ScaleResult; torch?: TorchResult; load: string }[] = [];
  for (const layout of o.layouts) {
    for (const ranks of o.ranks) {
      const dcpjs = await world(layout, ranks, o.tensors, o.heapMib);
      const torch =
        python && ranks <= o.torchMaxRanks
          ? await runPython<TorchResult>(PEER, [layout, String(ranks), String(o.tensors)], {}, python)
          : undefined;
      const load = loadavg()
        .map((x) => x.toFixed(1))
        .join(" ");
      print(dcpjs, torch, load);
      results.push({ dcpjs, ...(torch ? { torch } : {}), load });
    }
  }
  if (o.torch && !python) console.log("  note: PyTorch column skipped: the torch 2.13 venv is unavailable");
  if (python && o.ranks.some((r) => r > o.torchMaxRanks))
    console.log(`  note: PyTorch column run up to ${o.torchMaxRanks} ranks (--torch-max-ranks)`);
  console.log(JSON.stringify({ bench: "scale", params: o, results }));
}
