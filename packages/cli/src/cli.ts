// First: the AWS SDK's Node-version warning is silenced before any S3 client exists.
import "./quiet-aws-sdk.js";
// The s3:// and http(s):// / hf:// storage backends register themselves on import: every command takes folders and their URIs.
import "@dcpjs/http";
import "@dcpjs/s3";
import { readFileSync } from "node:fs";
import { CheckpointError, CheckpointException } from "@dcpjs/core";
import { Command, CommanderError } from "commander";
import { addAbortUploadsCommand } from "./commands/abort-uploads.js";
import { addConvertCommands } from "./commands/convert.js";
import { addCopyCommand } from "./commands/cp.js";
import { addInspectCommand, addListCommand } from "./commands/inspect.js";
import { addRemoveCommands } from "./commands/rm.js";
import { addVerifyCommand } from "./commands/verify.js";
import { EXIT_CODES } from "./options.js";

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

// In the order `dcp --help` lists them.
addInspectCommand(program);
addConvertCommands(program); // export, convert
addVerifyCommand(program);
addListCommand(program);
addRemoveCommands(program); // rm, gc
addCopyCommand(program);
addAbortUploadsCommand(program);

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
