import { DEFAULT_LIST_DEPTH, type InspectReport, inspectCheckpoint, listCheckpoints } from "@dcpjs/core/ops";
import type { Command } from "commander";
import { formatBytes, plural } from "../format.js";
import { EXIT_CODES, positiveInt } from "../options.js";

/**
 * Formats an inspect report as a fixed-width table with a totals line (`dcp inspect`).
 *
 * @param report - from `inspectCheckpoint`.
 */
export function formatInspectTable(report: InspectReport): string {
  const rows = report.entries.map((e) => [
    e.fqn,
    e.dtype ?? "value",
    e.shape ? `[${e.shape.join(", ")}]` : "-",
    String(e.chunks),
    String(e.bytes),
  ]);
  const header = ["fqn", "dtype", "shape", "chunks", "bytes"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) =>
    r.map((c, i) => (i >= 3 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ");
  const t = report.totals;
  return [
    line(header),
    ...rows.map(line),
    "",
    `${plural(t.entries, "entry")} (${plural(t.tensors, "tensor")}, ${plural(t.values, "value")}), ${formatBytes(t.bytes)} in ${plural(t.files, "data file")}; format ${report.format}, DCP version ${report.version}`,
    // An incremental checkpoint: the checkpoints whose files hold some of its items.
    ...(report.references.length > 0
      ? [
          `references: ${report.references.map((r) => `${r.checkpoint} (${plural(r.items, "item")}, ${formatBytes(r.bytes)})`).join(", ")}`,
        ]
      : []),
  ].join("\n");
}

/** What `dcp ls` says when it finds nothing: the folders it searched (the first few) and how deep. */
function noCheckpointsMessage(path: string, searched: readonly string[], depth: number): string {
  const shown = searched.slice(0, 10).join(", ");
  const more = searched.length > 10 ? ` and ${searched.length - 10} more` : "";
  return `no checkpoints at or under ${path} (searched ${plural(searched.length, "folder")}, ${plural(depth, "level")} deep: ${shown}${more})`;
}

/**
 * Adds `dcp inspect`: a checkpoint's entries.
 *
 * @param program - the `dcp` program.
 */
export function addInspectCommand(program: Command): void {
  program
    .command("inspect")
    .description("list a checkpoint's entries (fqn, dtype, global shape, chunks, bytes) and totals")
    .argument("<path>", "the checkpoint: a folder, s3://, http(s):// or hf:// URI")
    .option("--json", "print JSON instead of a table")
    .action(async (path: string, opts: { json?: boolean }) => {
      const report = await inspectCheckpoint(path);
      console.log(opts.json ? JSON.stringify(report, null, 2) : formatInspectTable(report));
    });
}

/**
 * Adds `dcp ls`: the checkpoints at and under a folder or prefix.
 *
 * @param program - the `dcp` program.
 */
export function addListCommand(program: Command): void {
  program
    .command("ls")
    .description(
      "list the checkpoints at and under a folder or s3:// prefix (searching sub-folders), newest first",
    )
    .argument("<path>", "a folder or s3:// prefix (e.g. a run's folder of step checkpoints)")
    .option(
      "--depth <n>",
      "search at most n folder levels below <path> (1: <path> and its direct sub-folders)",
      positiveInt,
      DEFAULT_LIST_DEPTH,
    )
    .option("--json", "print JSON")
    .addHelpText(
      "after",
      `\nExamples:\n  dcp ls ./checkpoints\n  dcp ls ./runs --depth 2\n  dcp ls s3://bucket/run-7 --json${EXIT_CODES}`,
    )
    .action(async (path: string, opts: { depth: number; json?: boolean }) => {
      const searched: string[] = [];
      const found = await listCheckpoints(path, {
        recursive: true,
        maxDepth: opts.depth,
        includeIncomplete: true,
        onFolder: (folder) => searched.push(folder),
      });
      if (opts.json) return console.log(JSON.stringify(found, null, 2));
      for (const c of found) {
        const when = c.modifiedMs ? new Date(c.modifiedMs).toISOString() : "-";
        console.log(
          `${c.state.padEnd(10)} ${(c.format ?? "-").padEnd(11)} ${plural(c.ranks.length, "rank").padStart(9)}  ${plural(c.entries, "entry").padStart(13)}  ${formatBytes(c.bytes).padStart(9)}  ${when}  ${c.id}${c.error ? `  (${c.error.code})` : ""}`,
        );
      }
      if (found.length === 0) console.log(noCheckpointsMessage(path, searched, opts.depth));
    });
}
