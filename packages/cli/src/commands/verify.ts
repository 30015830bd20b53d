import { type VerifyReport, verifyCheckpoint } from "@dcpjs/core/ops";
import cliProgress from "cli-progress";
import type { Command } from "commander";
import { plural } from "../format.js";
import { assertFolderOrAbsent, EXIT_CODES } from "../options.js";

/** `dcp verify --entries`: a table of every entry, what checked it, and whether it is damaged. */
function formatCheckedEntries(report: VerifyReport): string {
  const damaged = new Set(report.damaged.map((d) => d.fqn));
  const width = Math.max(3, ...report.entries.map((e) => e.fqn.length));
  const checkerWidth = Math.max(10, ...report.entries.map((e) => e.checkedBy.length));
  const rows = report.entries.map(
    (e) =>
      `${e.fqn.padEnd(width)}  ${e.checkedBy.padEnd(checkerWidth)}  ${damaged.has(e.fqn) ? "damaged" : "ok"}`,
  );
  return [`${"fqn".padEnd(width)}  ${"checked by".padEnd(checkerWidth)}  result`, ...rows].join("\n");
}

/**
 * Adds `dcp verify`: every item read and checked; exit 1 on damage.
 *
 * @param program - the `dcp` program.
 */
export function addVerifyCommand(program: Command): void {
  program
    .command("verify")
    .description("read every item of a checkpoint and check its length and checksum (exit 1 on damage)")
    .argument("<path>", "the checkpoint: a folder, s3://, http(s):// or hf:// URI (any format dcpjs reads)")
    .option("--json", "print JSON")
    .option("--no-progress", "do not draw a progress bar")
    .option(
      "--cache-dir <dir>",
      "read a remote checkpoint (s3://, http(s)://, hf://) through this machine-local cache folder",
    )
    .option("--entries", "print every entry and what checked it")
    .addHelpText(
      "after",
      `\nWhat checks an entry: the CRC-32 dcpjs records for each item (CRC-32C where recorded so), the zip\nCRC-32 of every member of a PyTorch item, a safetensors folder's CRC sidecar (sidecar CRC-32C), or\nnothing but its length (length only).\n\nExamples:\n  dcp verify ./checkpoints/step-100\n  dcp verify ./checkpoints/step-100 --entries\n  dcp verify s3://bucket/run-7/step-100 --json\n  dcp verify s3://bucket/run-7/step-100 --cache-dir /var/cache/dcpjs${EXIT_CODES}`,
    )
    .action(
      async (
        path: string,
        opts: { json?: boolean; progress: boolean; cacheDir?: string; entries?: boolean },
      ) => {
        if (opts.cacheDir !== undefined) assertFolderOrAbsent("--cache-dir", opts.cacheDir);
        const bar =
          opts.progress && !opts.json && process.stderr.isTTY === true
            ? new cliProgress.SingleBar(
                { format: "verify {bar} {percentage}% | ETA {eta_formatted}", stream: process.stderr },
                cliProgress.Presets.shades_classic,
              )
            : undefined;
        bar?.start(1, 0);
        const report = await verifyCheckpoint(path, {
          ...(opts.cacheDir !== undefined ? { cacheDir: opts.cacheDir } : {}),
          onProgress: (done, total) => {
            bar?.setTotal(Math.max(total, 1));
            bar?.update(done);
          },
        });
        bar?.stop();
        if (opts.json) console.log(JSON.stringify(report, null, 2));
        else {
          for (const d of report.damaged) console.error(`damaged: ${d.fqn}: ${d.code}: ${d.message}`);
          if (opts.entries) console.log(formatCheckedEntries(report));
          const by = Object.entries(report.checkedBy)
            .map(([checker, n]) => `${n} by ${checker}`)
            .join(", ");
          console.log(
            `${plural(report.checked, "entry")} checked, ${report.damaged.length} damaged${by ? `: ${by}` : ""}`,
          );
        }
        if (report.damaged.length > 0) process.exitCode = 1;
      },
    );
}
