import { CheckpointError } from "@dcpjs/core";
import { type ConvertFormat, convertCheckpoint, DEFAULT_CONVERT_WINDOW_BYTES } from "@dcpjs/core/ops";
import type { Command } from "commander";
import { formatBytes, plural } from "../format.js";
import { parseSize } from "../options.js";

/** The options of `dcp convert` (and `dcp export`, which is `convert --to safetensors`). */
interface ConvertFlags {
  readonly to: string;
  readonly window: number;
  readonly maxShardSize?: number;
  readonly sharded?: boolean;
  readonly checksums?: boolean;
}

/** The safetensors-only flags given, by their names. */
function safetensorsFlags(opts: ConvertFlags): string[] {
  return [
    ...(opts.maxShardSize !== undefined ? ["--max-shard-size"] : []),
    ...(opts.sharded ? ["--sharded"] : []),
    ...(opts.checksums ? ["--checksums"] : []),
  ];
}

/** Runs a conversion as `dcp convert` and `dcp export` ask for it. */
async function convert(src: string, dst: string, opts: ConvertFlags) {
  if (opts.to !== "dcpjs" && opts.to !== "torch" && opts.to !== "safetensors")
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected --to dcpjs, torch or safetensors, got ${opts.to}`,
    );
  const to: ConvertFormat = opts.to;
  const only = safetensorsFlags(opts);
  if (to !== "safetensors" && only.length > 0)
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected --to safetensors with ${only.join(", ")}, got --to ${to}`,
    );
  return convertCheckpoint(src, dst, {
    to,
    windowBytes: opts.window,
    ...(opts.maxShardSize !== undefined ? { maxShardSize: opts.maxShardSize } : {}),
    ...(opts.sharded ? { sharded: true } : {}),
    ...(opts.checksums ? { checksums: true } : {}),
  });
}

/**
 * Adds `dcp convert` (into dcpjs's, PyTorch's or the safetensors format) and its alias
 * `dcp export` (`convert --to safetensors`, with `--format safetensors` as before).
 *
 * @param program - the `dcp` program.
 */
export function addConvertCommands(program: Command): void {
  program
    .command("export")
    .description(
      "export a checkpoint to safetensors (Hugging Face layout), locally or on S3 (dcp convert --to safetensors)",
    )
    .argument("<src>", "the checkpoint: a folder, s3://, http(s):// or hf:// URI (any format dcpjs reads)")
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
        const s = await convert(src, dst, {
          ...opts,
          to: "safetensors",
          window: DEFAULT_CONVERT_WINDOW_BYTES,
        });
        console.log(
          `exported ${plural(s.entries, "entry")} (${formatBytes(s.bytes)}) to ${dst}: ${(s.files ?? []).join(", ")}`,
        );
      },
    );

  program
    .command("convert")
    .description(
      "convert a checkpoint (dcpjs, PyTorch DCP, or a safetensors folder) into dcpjs's or PyTorch's format, or safetensors",
    )
    .argument("<src>", "the source: a folder, s3://, http(s):// or hf:// URI in any format dcpjs reads")
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
    .option(
      "--max-shard-size <size>",
      "--to safetensors: largest output file, e.g. 5GB (default 5GB)",
      parseSize,
    )
    .option("--sharded", "--to safetensors: write the save_distributed layout (shard-*-model-*.safetensors)")
    .option(
      "--checksums",
      "--to safetensors: also write model.safetensors.crc32c.json, checked by every later load",
    )
    .addHelpText(
      "after",
      "\nMemory: entries are loaded and written in batches of at most --window bytes of tensors (a larger\ntensor alone), so a conversion holds the window plus the largest tensor, never the whole checkpoint;\n.metadata (or the safetensors index) is written last: an interrupted conversion leaves nothing loadable.\n\nExamples:\n  dcp convert ./hf/model ./ckpt/imported\n  dcp convert ./ckpt/step-100 ./for-pytorch --to torch\n  dcp convert s3://bucket/torch-ckpt ./ckpt --to dcpjs --window 64MB\n  dcp convert ./for-pytorch ./hf --to safetensors",
    )
    .action(async (src: string, dst: string, opts: ConvertFlags) => {
      const s = await convert(src, dst, opts);
      console.log(
        `converted ${plural(s.entries, "entry")} from ${src} into the ${opts.to} checkpoint ${dst}`,
      );
    });
}
