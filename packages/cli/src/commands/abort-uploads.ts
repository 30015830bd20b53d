import { cleanupUploads } from "@dcpjs/core/ops";
import type { Command } from "commander";

/**
 * Adds `dcp abort-uploads`: the incomplete multipart uploads a killed save left.
 *
 * @param program - the `dcp` program.
 */
export function addAbortUploadsCommand(program: Command): void {
  program
    .command("abort-uploads")
    .description(
      "abort the incomplete multipart uploads under an s3:// checkpoint prefix (left by a rank killed mid-save)",
    )
    .argument("<uri>", "the checkpoint's s3://bucket/prefix")
    .action(async (uri: string) => {
      const keys = await cleanupUploads(uri);
      console.log(`aborted ${keys.length} incomplete multipart upload(s) under ${uri}`);
      for (const k of keys) console.log(`  ${k}`);
    });
}
