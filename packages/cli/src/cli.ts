// The s3:// storage backend registers itself on import: every command takes folders and s3:// URIs.
import "@dcpjs/s3";
import {
  CheckpointError,
  CheckpointException,
  exportSafetensors,
  FileSystemWriter,
  loadStateDictFromKeys,
  save,
} from "@dcpjs/core";
import cliProgress from "cli-progress";
import { Command } from "commander";
import { formatInspectTable, inspectCheckpoint } from "./inspect.js";
import { collectGarbage, copyCheckpoint, listCheckpoints, removeCheckpoint } from "./ops/checkpoint-ops.js";
import { parseSize, positiveInt } from "./options.js";
import { verifyCheckpoint } from "./verify.js";

const EXIT_CODES = "\nExit codes: 0 done; 1 a damaged or failed checkpoint or operation; 2 bad arguments.";

const program = new Command()
  .name("dcp")
  .description("dcpjs: distributed checkpoints for TypeScript (PyTorch DCP's format and semantics)")
  .showHelpAfterError();

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
        `exported ${s.tensors} tensors (${(s.bytes / 1e6).toFixed(1)} MB) and ${s.values} values to ${dst}: ${s.files.join(", ")}`,
      );
    },
  );

program
  .command("convert")
  .description(
    "convert a checkpoint (dcpjs, PyTorch DCP, or a safetensors folder) into dcpjs's or PyTorch's format",
  )
  .argument("<src>", "the source: a folder or s3:// URI in any format dcpjs reads")
  .argument("<dst>", "the new checkpoint: a folder or s3:// URI")
  .option("--to <format>", "dcpjs (CRC-32 per item) or torch (PyTorch DCP's own format)", "dcpjs")
  .addHelpText(
    "after",
    "\nExamples:\n  dcp convert ./hf/model ./ckpt/imported\n  dcp convert ./ckpt/step-100 ./for-pytorch --to torch\n  dcp convert s3://bucket/torch-ckpt ./ckpt --to dcpjs",
  )
  .action(async (src: string, dst: string, opts: { to: string }) => {
    if (opts.to !== "dcpjs" && opts.to !== "torch")
      throw new CheckpointError("INVALID_ARGUMENT", `Expected --to dcpjs or torch, got ${opts.to}`);
    const format = opts.to;
    const sd = await loadStateDictFromKeys({ checkpointId: src });
    const storageWriter = dst.startsWith("s3://")
      ? new (await import("@dcpjs/s3")).S3StorageWriter({ path: dst, format })
      : new FileSystemWriter({ path: dst, format });
    const md = await save(sd, { storageWriter });
    console.log(
      `converted ${md.stateDictMetadata.size} entries from ${src} into the ${format} checkpoint ${dst}`,
    );
  });

program
  .command("verify")
  .description("read every item of a checkpoint and check its length and checksum (exit 1 on damage)")
  .argument("<path>", "the checkpoint: a folder or s3:// URI (any format dcpjs reads)")
  .option("--json", "print JSON")
  .option("--no-progress", "do not draw a progress bar")
  .option("--cache-dir <dir>", "read an s3:// checkpoint through this machine-local cache folder")
  .addHelpText(
    "after",
    `\nExamples:\n  dcp verify ./checkpoints/step-100\n  dcp verify s3://bucket/run-7/step-100 --json\n  dcp verify s3://bucket/run-7/step-100 --cache-dir /var/cache/dcpjs${EXIT_CODES}`,
  )
  .action(async (path: string, opts: { json?: boolean; progress: boolean; cacheDir?: string }) => {
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
      console.log(
        `${report.checked} entries checked, ${report.damaged.length} damaged; ${report.unchecksummed} read without a checksum (length only)`,
      );
    }
    if (report.damaged.length > 0) process.exitCode = 1;
  });

program
  .command("ls")
  .description("list the checkpoints at and under a folder or s3:// prefix, newest first")
  .argument("<path>", "a folder or s3:// prefix (e.g. a run's folder of step checkpoints)")
  .option("--json", "print JSON")
  .addHelpText("after", `\nExamples:\n  dcp ls ./checkpoints\n  dcp ls s3://bucket/run-7 --json${EXIT_CODES}`)
  .action(async (path: string, opts: { json?: boolean }) => {
    const found = await listCheckpoints(path);
    if (opts.json) return console.log(JSON.stringify(found, null, 2));
    for (const c of found) {
      const when = c.modifiedMs ? new Date(c.modifiedMs).toISOString() : "-";
      console.log(
        `${c.state.padEnd(10)} ${(c.format ?? "-").padEnd(11)} ranks ${c.ranks.join(",") || "-"}  ${String(c.entries).padStart(6)} entries  ${(c.bytes / 1e6).toFixed(1).padStart(9)} MB  ${when}  ${c.id}`,
      );
    }
    if (found.length === 0) console.log(`no checkpoints at ${path}`);
  });

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
        : `removed ${r.removed.length} files (${(r.bytes / 1e6).toFixed(1)} MB) from ${path}`,
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
    "leave files younger than this (a save may be writing them)",
    positiveInt,
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
        `${opts.dryRun ? "would free" : "freed"} ${(r.bytes / 1e6).toFixed(1)} MB in ${r.removed.length} entries; ${r.uploads} multipart uploads aborted`,
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
          : `copied ${r.copied.length} data files (${(r.bytes / 1e6).toFixed(1)} MB), skipped ${r.skipped.length} already intact, committed ${dst}`,
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

// `pnpm start -- --to DIR` hands the script a literal `--`; drop it so the options after it count.
const args = process.argv.slice(2);
const dashes = args.indexOf("--");
if (dashes >= 0) args.splice(dashes, 1);

try {
  await program.parseAsync(args, { from: "user" });
} catch (error) {
  if (error instanceof CheckpointException) {
    console.error(`dcp: ${error.message}`);
  } else if (error instanceof CheckpointError) {
    console.error(`dcp: ${error.code}: ${error.message}`);
  } else {
    console.error(error);
  }
  process.exitCode = error instanceof CheckpointError && error.code === "INVALID_ARGUMENT" ? 2 : 1;
}
