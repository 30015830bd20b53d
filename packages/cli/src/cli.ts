// First: the AWS SDK's Node-version warning is silenced before any S3 client exists.
import "./quiet-aws-sdk.js";
// The s3:// and http(s):// / hf:// storage backends register themselves on import: every command takes folders and their URIs.
import "@dcpjs/http";
import "@dcpjs/s3";
import { readFileSync, statSync } from "node:fs";
import {
  CheckpointError,
  CheckpointException,
  convertCheckpoint,
  DEFAULT_CONVERT_WINDOW_BYTES,
  DEFAULT_LIST_DEPTH,
  exportSafetensors,
  FileSystemWriter,
  listCheckpoints,
} from "@dcpjs/core";
import cliProgress from "cli-progress";
import { Command, CommanderError } from "commander";
import { formatBytes, plural } from "./format.js";
import { formatInspectTable, inspectCheckpoint } from "./inspect.js";
import { collectGarbage, copyCheckpoint, removeCheckpoint } from "./ops/checkpoint-ops.js";
import { nonNegativeInt, parseSize, positiveInt } from "./options.js";
import { type VerifyReport, verifyCheckpoint } from "./verify.js";

const EXIT_CODES = "\nExit codes: 0 done; 1 a damaged or failed checkpoint or operation; 2 bad arguments.";

const VERSION = (
  JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }
).version;

const program = new Command()
  .name("dcp")
  .description("dcpjs: distributed checkpoints for TypeScript (PyTorch DCP's format and semantics)")
  .version(VERSION, "-V, --version", "print the version of @dcpjs/cli")
  // Usage errors throw (exit 2 below) instead of exiting; commander's message is printed once, as "dcp: …".
  .exitOverride()
  .configureOutput({ outputError: (text, write) => write(`dcp: ${text.replace(/^error: /, "")}`) })
  .addHelpText(
    "after",
    `${EXIT_CODES}\n\nEnvironment: the standard AWS variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,\nAWS_PROFILE) and S3_ENDPOINT for s3:// paths. dcp sets AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true\nfor itself, silencing the AWS SDK's Node-version warning (set it to false to see it); in your own\nprograms, set that variable to true in the environment to silence it.`,
  );

program
  .command("inspect")
  .description("list a checkpoint's entries (fqn, dtype, global shape, chunks, bytes) and totals")
  .argument("<path>", "the checkpoint folder or s3:// URI")
  .option("--json", "print JSON instead of a table")
  .action(async (path: string, opts: { json?: boolean }) => {
    const report = await inspectCheckpoint(path);
    console.log(opts.json ? JSON.stringify(report, null, 2) : formatInspectTable(report));
  });

program
  .command("export")
  .description("export a checkpoint to safetensors (Hugging Face layout), locally or on S3")
  .argument("<src>", "the checkpoint: a folder or s3:// URI (any format dcpjs reads)")
  .argument("<dst>", "the destination folder or s3:// prefix")
  .option("--format <format>", "the output format (only safetensors)", "safetensors")
  .option(
    "--max-shard-size <size>",
    "largest output file, e.g. 5GB, 500MB, 1048576",
    parseSize,
    5_000_000_000,
  )
  .option(
    "--sharded",
    "write the save_distributed layout (shard-*-model-*.safetensors with DCP_SHARDING_INFO)",
  )
  .option("--checksums", "also write model.safetensors.crc32c.json, checked by every later load")
  .addHelpText(
    "after",
    "\nExamples:\n  dcp export ./ckpt/step-100 ./hf/model\n  dcp export s3://bucket/run/step-100 ./hf --max-shard-size 2GB --checksums\n  dcp export ./ckpt ./hf-sharded --sharded",
  )
  .action(
    async (
      src: string,
      dst: string,
      opts: { format: string; maxShardSize: number; sharded?: boolean; checksums?: boolean },
    ) => {
      if (opts.format !== "safetensors")
        throw new CheckpointError("INVALID_ARGUMENT", `Expected --format safetensors, got ${opts.format}`);
      const s = await exportSafetensors(src, dst, {
        maxShardSize: opts.maxShardSize,
        sharded: opts.sharded ?? false,
        checksums: opts.checksums ?? false,
      });
      console.log(
        `exported ${plural(s.tensors, "tensor")} (${formatBytes(s.bytes)}) and ${plural(s.values, "value")} to ${dst}: ${s.files.join(", ")}`,
      );
    },
  );

program
  .command("convert")
  .description(
    "convert a checkpoint (dcpjs, PyTorch DCP, or a safetensors folder) into dcpjs's or PyTorch's format, or safetensors",
  )
  .argument("<src>", "the source: a folder or s3:// URI in any format dcpjs reads")
  .argument("<dst>", "the new checkpoint: a folder or s3:// URI")
  .option(
    "--to <format>",
    "dcpjs (CRC-32 per item), torch (PyTorch DCP's own format) or safetensors (Hugging Face layout)",
    "dcpjs",
  )
  .option(
    "--window <size>",
    "most tensor bytes held at once beyond the largest tensor, e.g. 256MB, 1GB (default 256MiB)",
    parseSize,
    DEFAULT_CONVERT_WINDOW_BYTES,
  )
  .addHelpText(
    "after",
    "\nMemory: entries are loaded and written in batches of at most --window bytes of tensors (a larger\ntensor alone), so a conversion holds the window plus the largest tensor, never the whole checkpoint;\n.metadata (or the safetensors index) is written last: an interrupted conversion leaves nothing loadable.\n\nExamples:\n  dcp convert ./hf/model ./ckpt/imported\n  dcp convert ./ckpt/step-100 ./for-pytorch --to torch\n  dcp convert s3://bucket/torch-ckpt ./ckpt --to dcpjs --window 64MB\n  dcp convert ./for-pytorch ./hf --to safetensors",
  )
  .action(async (src: string, dst: string, opts: { to: string; window: number }) => {
    if (opts.to !== "dcpjs" && opts.to !== "torch" && opts.to !== "safetensors")
      throw new CheckpointError(
        "INVALID_ARGUMENT",
        `Expected --to dcpjs, torch or safetensors, got ${opts.to}`,
      );
    const format = opts.to;
    const storageWriter =
      format === "safetensors"
        ? undefined
        : dst.startsWith("s3://")
          ? new (await import("@dcpjs/s3")).S3StorageWriter({ path: dst, format })
          : new FileSystemWriter({ path: dst, format });
    const s = await convertCheckpoint(src, dst, {
      to: format,
      windowBytes: opts.window,
      ...(storageWriter ? { storageWriter } : {}),
    });
    console.log(`converted ${plural(s.entries, "entry")} from ${src} into the ${format} checkpoint ${dst}`);
  });

program
  .command("verify")
  .description("read every item of a checkpoint and check its length and checksum (exit 1 on damage)")
  .argument("<path>", "the checkpoint: a folder or s3:// URI (any format dcpjs reads)")
  .option("--json", "print JSON")
  .option("--no-progress", "do not draw a progress bar")
  .option("--cache-dir <dir>", "read an s3:// checkpoint through this machine-local cache folder")
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

/** What `dcp ls` says when it finds nothing: the folders it searched (the first few) and how deep. */
function noCheckpointsMessage(path: string, searched: readonly string[], depth: number): string {
  const shown = searched.slice(0, 10).join(", ");
  const more = searched.length > 10 ? ` and ${searched.length - 10} more` : "";
  return `no checkpoints at or under ${path} (searched ${plural(searched.length, "folder")}, ${plural(depth, "level")} deep: ${shown}${more})`;
}

program
  .command("rm")
  .description("remove a checkpoint safely: .metadata first, then its data files")
  .argument("<path>", "the checkpoint")
  .option("--force", "remove data files even where no committed checkpoint is")
  .option("--json", "print JSON")
  .addHelpText(
    "after",
    `\nExamples:\n  dcp rm ./checkpoints/step-100\n  dcp rm s3://bucket/run-7/step-100${EXIT_CODES}`,
  )
  .action(async (path: string, opts: { force?: boolean; json?: boolean }) => {
    const r = await removeCheckpoint(path, { force: opts.force ?? false });
    console.log(
      opts.json
        ? JSON.stringify(r)
        : `removed ${plural(r.removed.length, "file")} (${formatBytes(r.bytes)}) from ${path}`,
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
    "treat <path> as a run: keep the newest n committed checkpoints, remove older ones",
    positiveInt,
  )
  .option("--json", "print JSON")
  .addHelpText(
    "after",
    `\nExamples:\n  dcp gc ./checkpoints/step-100 --dry-run\n  dcp gc s3://bucket/run-7 --keep-last 3 --grace 600${EXIT_CODES}`,
  )
  .action(
    async (path: string, opts: { dryRun?: boolean; grace: number; keepLast?: number; json?: boolean }) => {
      const r = await collectGarbage(path, {
        dryRun: opts.dryRun ?? false,
        graceMs: opts.grace * 1000,
        ...(opts.keepLast !== undefined ? { keepLast: opts.keepLast } : {}),
      });
      if (opts.json) return console.log(JSON.stringify({ dryRun: opts.dryRun ?? false, ...r }));
      for (const f of r.removed) console.log(`${opts.dryRun ? "would remove" : "removed"} ${f}`);
      console.log(
        `${opts.dryRun ? "would free" : "freed"} ${formatBytes(r.bytes)} in ${plural(r.removed.length, "entry")}; ${plural(r.uploads, "multipart upload")} aborted`,
      );
    },
  );

program
  .command("cp")
  .description("copy a checkpoint between folders and S3, every item verified, committed last, incremental")
  .argument("<src>", "the checkpoint")
  .argument("<dst>", "the destination folder or s3:// prefix")
  .option("--concurrency <n>", "ranged reads in flight, over all files (8 MiB each)", positiveInt, 8)
  .option("--cache-dir <dir>", "read an s3:// source through this machine-local cache folder")
  .option("--json", "print JSON")
  .option("--no-progress", "do not draw a progress bar")
  .addHelpText(
    "after",
    `\nExamples:\n  dcp cp ./checkpoints/step-100 s3://bucket/run-7/step-100\n  dcp cp s3://bucket/run-7/step-100 ./local-copy   # again: copies nothing${EXIT_CODES}`,
  )
  .action(
    async (
      src: string,
      dst: string,
      opts: { concurrency: number; json?: boolean; progress: boolean; cacheDir?: string },
    ) => {
      if (opts.cacheDir !== undefined) assertFolderOrAbsent("--cache-dir", opts.cacheDir);
      const bar = opts.progress && !opts.json && process.stderr.isTTY === true ? progressBar() : undefined;
      const r = await copyCheckpoint(src, dst, {
        concurrency: opts.concurrency,
        ...(opts.cacheDir !== undefined ? { cacheDir: opts.cacheDir } : {}),
        ...(bar ? { onProgress: bar.add } : {}),
      });
      bar?.stop();
      console.log(
        opts.json
          ? JSON.stringify(r)
          : `copied ${plural(r.copied.length, "data file")} (${formatBytes(r.bytes)}), skipped ${r.skipped.length} already intact, committed ${dst}`,
      );
    },
  );

/** A bytes progress bar with rate and ETA on stderr (cli-progress). */
function progressBar() {
  const bar = new cliProgress.SingleBar(
    {
      format: "copy {bar} {percentage}% | {value_mb} MB | {speed} MB/s | ETA {eta_formatted}",
      stream: process.stderr,
    },
    cliProgress.Presets.shades_classic,
  );
  const started = performance.now();
  let done = 0;
  bar.start(1, 0, { value_mb: "0", speed: "0" });
  return {
    add: (bytes: number) => {
      done += bytes;
      bar.setTotal(Math.max(done, 1));
      bar.update(done, {
        value_mb: (done / 1e6).toFixed(1),
        speed: (done / 1e6 / ((performance.now() - started) / 1000)).toFixed(0),
      });
    },
    stop: () => bar.stop(),
  };
}

program
  .command("abort-uploads")
  .description(
    "abort the incomplete multipart uploads under an s3:// checkpoint prefix (left by a rank killed mid-save)",
  )
  .argument("<uri>", "the checkpoint's s3://bucket/prefix")
  .action(async (uri: string) => {
    const { abortIncompleteUploads } = await import("@dcpjs/s3");
    const keys = await abortIncompleteUploads(uri);
    console.log(`aborted ${keys.length} incomplete multipart upload(s) under ${uri}`);
    for (const k of keys) console.log(`  ${k}`);
  });

/**
 * Refuses an option naming a folder that is something else (a file): the read cache would fail
 * deep inside with a raw `ENOTDIR`.
 */
function assertFolderOrAbsent(option: string, path: string): void {
  const stat = statSync(path, { throwIfNoEntry: false });
  if (stat && !stat.isDirectory())
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected ${option} to be a folder (or a path to create one), got a file: ${path}`,
    );
}

// Each usage error ends with a one-line hint instead of the whole help.
program.showHelpAfterError("(dcp --help for usage)");
for (const command of program.commands)
  command.showHelpAfterError(`(dcp ${command.name()} --help for usage)`);

// `pnpm dcp -- ls DIR` hands the script a literal leading `--`; drop it so the command after it counts.
const args = process.argv.slice(2);
if (args[0] === "--") args.shift();
process.exitCode = await runCli(args);

/**
 * Runs the program and returns the exit code: 0 done (and for --help, --version); 1 a damaged or
 * failed checkpoint or operation; 2 bad arguments (commander's usage errors, `INVALID_ARGUMENT`).
 * Known errors are one line, `dcp: CODE: message`; only an unexpected error prints its stack.
 */
async function runCli(args: string[]): Promise<number> {
  try {
    await program.parseAsync(args, { from: "user" });
    return Number(process.exitCode ?? 0);
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2; // commander printed it
    if (error instanceof CheckpointException) console.error(`dcp: ${error.message}`);
    else if (error instanceof CheckpointError) console.error(`dcp: ${error.code}: ${error.message}`);
    else if (isSystemError(error))
      console.error(`dcp: ${error.message.startsWith(error.code) ? "" : `${error.code}: `}${error.message}`);
    else console.error(error);
    return error instanceof CheckpointError && error.code === "INVALID_ARGUMENT" ? 2 : 1;
  }
}

/** An error of Node's own (`ENOENT`, `ENOTDIR`, `ECONNREFUSED`, …): its code and message say it all. */
function isSystemError(error: unknown): error is Error & { code: string } {
  return error instanceof Error && typeof (error as { code?: unknown }).code === "string";
}
