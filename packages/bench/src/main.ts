import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command, InvalidArgumentError } from "commander";
import { localLoad, localSave } from "./local.js";
import { s3Load, s3Save } from "./s3.js";

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1)
    throw new InvalidArgumentError(`Expected an integer >= 1, got ${value}`);
  return n;
}

const program = new Command()
  .name("pnpm bench")
  .description("dcpjs benchmarks; each prints a table and one JSON line of ratios");

program
  .command("local-save")
  .description("save to a local folder vs raw write+fsync and PyTorch DCP")
  .option("--tensors <n>", "tensors", positiveInt, 64)
  .option("--tensor-mib <n>", "MiB per tensor", positiveInt, 32)
  .option("--reps <n>", "repetitions (best of N)", positiveInt, 3)
  .option("--thread-count <n>", "dcpjs files per rank", positiveInt, 1)
  .option("--dir <dir>", "scratch folder", join(tmpdir(), "dcpjs-bench"))
  .action((o) =>
    localSave({
      tensors: o.tensors,
      tensorMib: o.tensorMib,
      reps: o.reps,
      dir: o.dir,
      threadCount: o.threadCount,
    }),
  );

program
  .command("local-load")
  .description("load from a local folder vs raw reads and PyTorch DCP, cold and warm page cache")
  .option("--tensors <n>", "tensors", positiveInt, 64)
  .option("--tensor-mib <n>", "MiB per tensor", positiveInt, 32)
  .option("--reps <n>", "repetitions (best of N)", positiveInt, 3)
  .option("--thread-count <n>", "dcpjs files per rank", positiveInt, 1)
  .option("--dir <dir>", "scratch folder", join(tmpdir(), "dcpjs-bench"))
  .action((o) =>
    localLoad({
      tensors: o.tensors,
      tensorMib: o.tensorMib,
      reps: o.reps,
      dir: o.dir,
      threadCount: o.threadCount,
    }),
  );

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
    .action((o) =>
      fn({
        tensors: o.tensors,
        tensorMib: o.tensorMib,
        reps: o.reps,
        threadCount: o.threadCount,
        partMib: o.partMib,
        queueSize: o.queueSize,
      }),
    );
}

await program.parseAsync();
