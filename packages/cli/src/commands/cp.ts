import { copyCheckpoint } from "@dcpjs/core/ops";
import cliProgress from "cli-progress";
import type { Command } from "commander";
import { formatBytes, plural } from "../format.js";
import { assertFolderOrAbsent, EXIT_CODES, positiveInt } from "../options.js";

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
  bar.start(1, 0, { value_mb: "0", speed: "0" });
  return {
    update: (done: number, total: number) => {
      bar.setTotal(Math.max(total, 1));
      bar.update(done, {
        value_mb: (done / 1e6).toFixed(1),
        speed: (done / 1e6 / ((performance.now() - started) / 1000)).toFixed(0),
      });
    },
    stop: () => bar.stop(),
  };
}

/**
 * Adds `dcp cp`: a verified, incremental copy committed last — of a DCP checkpoint (`.metadata`
 * last) or a safetensors repository (every shard checked against the `--checksums` sidecar when
 * there is one, else its header and size; the index last), from a folder, `s3://`, `http(s)://` or
 * `hf://` to a folder or `s3://`.
 *
 * @param program - the `dcp` program.
 */
export function addCopyCommand(program: Command): void {
  program
    .command("cp")
    .description(
      "copy a checkpoint or safetensors repository to a folder or S3 (from a folder, S3, http(s):// or hf://), every item verified, committed last, incremental",
    )
    .argument(
      "<src>",
      "the checkpoint or repository: a folder, s3://, http(s):// or hf://ORG/REPO[@REV][/SUB]",
    )
    .argument("<dst>", "the destination folder or s3:// prefix")
    .option("--concurrency <n>", "ranged reads in flight, over all files (8 MiB each)", positiveInt, 8)
    .option(
      "--cache-dir <dir>",
      "read a remote source (s3://, http(s)://, hf://) through this machine-local cache folder",
    )
    .option(
      "--keep-refs",
      "an incremental checkpoint keeps its references: its bases must have been copied beside <dst> first, under the same names",
    )
    .option("--json", "print JSON")
    .option("--no-progress", "do not draw a progress bar")
    .addHelpText(
      "after",
      `\nA safetensors repository (no .metadata) is copied whole: its shards, model.safetensors.index.json
(written last), the CRC-32C sidecar of \`dcp export --checksums\` when present (every tensor checked
against it; otherwise each shard's header is parsed and its size checked), and the config and
tokenizer files beside them when the source lists them (hf:// through the Hub's tree API).
hf:// reads HF_ENDPOINT and HF_TOKEN.

An incremental checkpoint (items that reference a base's files) is copied self-contained: the
referenced bytes are copied in and the references rewritten to the copy's own files. With
--keep-refs the references stay, and each base must already lie beside <dst> under its name.

Examples:
  dcp cp ./checkpoints/step-100 s3://bucket/run-7/step-100
  dcp cp s3://bucket/run-7/step-100 ./local-copy   # again: copies nothing
  dcp cp https://models.example.com/llama ./llama
  dcp cp hf://org/model s3://bucket/models/model
  dcp cp ./run/step-100 s3://bucket/run/step-100 && dcp cp --keep-refs ./run/step-110 s3://bucket/run/step-110${EXIT_CODES}`,
    )
    .action(
      async (
        src: string,
        dst: string,
        opts: {
          concurrency: number;
          json?: boolean;
          progress: boolean;
          cacheDir?: string;
          keepRefs?: boolean;
        },
      ) => {
        if (opts.cacheDir !== undefined) assertFolderOrAbsent("--cache-dir", opts.cacheDir);
        const bar = opts.progress && !opts.json && process.stderr.isTTY === true ? progressBar() : undefined;
        const r = await copyCheckpoint(src, dst, {
          concurrency: opts.concurrency,
          keepRefs: opts.keepRefs ?? false,
          ...(opts.cacheDir !== undefined ? { cacheDir: opts.cacheDir } : {}),
          ...(bar ? { onProgress: bar.update } : {}),
        });
        bar?.stop();
        console.log(
          opts.json
            ? JSON.stringify(r)
            : `copied ${plural(r.copied.length, "data file")} (${formatBytes(r.bytes)}, verified by ${r.verifiedBy}), skipped ${r.skipped.length} already intact${r.layout === "safetensors" ? `, ${plural(r.files.length, "other file")}` : ""}${r.bases ? `, ${opts.keepRefs ? "still referencing" : "bytes copied in from"} ${r.bases.join(", ")}` : ""}, committed ${dst}`,
        );
      },
    );
}
