import { collectGarbage, removeCheckpoint } from "@dcpjs/core/ops";
import type { Command } from "commander";
import { formatBytes, plural } from "../format.js";
import { EXIT_CODES, nonNegativeInt, positiveInt } from "../options.js";

/**
 * Adds `dcp rm` (a checkpoint, `.metadata` first) and `dcp gc` (what crashed or superseded saves left).
 *
 * @param program - the `dcp` program.
 */
export function addRemoveCommands(program: Command): void {
  program
    .command("rm")
    .description("remove a checkpoint safely: .metadata first, then its data files")
    .argument("<path>", "the checkpoint")
    .option(
      "--force",
      "remove data files even where no committed checkpoint is, or one that incremental checkpoints reference (they break)",
    )
    .option(
      "--lease-grace <seconds>",
      "a base lease younger than this is an in-flight incremental save's and holds the checkpoint",
      nonNegativeInt,
      3600,
    )
    .option("--json", "print JSON")
    .addHelpText(
      "after",
      `\nExamples:\n  dcp rm ./checkpoints/step-100\n  dcp rm s3://bucket/run-7/step-100${EXIT_CODES}`,
    )
    .action(async (path: string, opts: { force?: boolean; leaseGrace: number; json?: boolean }) => {
      const r = await removeCheckpoint(path, {
        force: opts.force ?? false,
        leaseGraceMs: opts.leaseGrace * 1000,
      });
      if (opts.json) return console.log(JSON.stringify(r));
      console.log(`removed ${plural(r.removed.length, "file")} (${formatBytes(r.bytes)}) from ${path}`);
      if (r.broken)
        console.log(
          `broke ${plural(r.broken.length, "checkpoint")} that referenced it (they no longer load): ${r.broken.join(", ")}`,
        );
    });

  program
    .command("gc")
    .description(
      "remove what crashed or superseded saves left: unreferenced data files, .metadata tmp files, multipart uploads",
    )
    .argument("<path>", "a checkpoint folder (or, with --keep-last, a run prefix)")
    .option("--dry-run", "only report")
    .option(
      "--grace <seconds>",
      "leave files younger than this (a save may be writing them); 0 collects now",
      nonNegativeInt,
      3600,
    )
    .option(
      "--keep-last <n>",
      "treat <path> as a run: keep the newest n committed checkpoints and the ones they reference, remove older ones",
      positiveInt,
    )
    .option(
      "--lease-grace <seconds>",
      "a base lease younger than this is an in-flight incremental save's and holds its checkpoint",
      nonNegativeInt,
      3600,
    )
    .option("--json", "print JSON")
    .addHelpText(
      "after",
      `\nExamples:\n  dcp gc ./checkpoints/step-100 --dry-run\n  dcp gc s3://bucket/run-7 --keep-last 3 --grace 600${EXIT_CODES}`,
    )
    .action(
      async (
        path: string,
        opts: { dryRun?: boolean; grace: number; leaseGrace: number; keepLast?: number; json?: boolean },
      ) => {
        const r = await collectGarbage(path, {
          dryRun: opts.dryRun ?? false,
          graceMs: opts.grace * 1000,
          leaseGraceMs: opts.leaseGrace * 1000,
          ...(opts.keepLast !== undefined ? { keepLast: opts.keepLast } : {}),
        });
        if (opts.json) return console.log(JSON.stringify({ dryRun: opts.dryRun ?? false, ...r }));
        for (const f of r.removed) console.log(`${opts.dryRun ? "would remove" : "removed"} ${f}`);
        console.log(
          `${opts.dryRun ? "would free" : "freed"} ${formatBytes(r.bytes)} in ${plural(r.removed.length, "entry")}; ${plural(r.uploads, "multipart upload")} aborted`,
        );
      },
    );
}
