// Child process for overwrite and race tests: prints "ready", saves the state dict of seed argv[3]
// (test/support/tensors.ts) to argv[2] — a folder or an s3:// URI (the standard AWS variables and
// S3_ENDPOINT) — with overwrite per argv[4] ("true" or "false"), then prints "committed" or
// "error CODE" (the root cause's code). With argv[5], it waits that many ms between writing its
// data files and its commit (a save whose files age while slower ranks finish).
import { CheckpointError, CheckpointException, FileSystemWriter, save } from "@dcpjs/core";
import { S3StorageWriter } from "@dcpjs/s3";
import { seededState } from "./tensors.js";

const [path, seed, overwrite] = [process.argv[2]!, Number(process.argv[3]), process.argv[4] !== "false"];
const storageWriter = path.startsWith("s3://")
  ? new S3StorageWriter({ path, overwrite })
  : new FileSystemWriter({ path, overwrite });
const holdMs = Number(process.argv[5] ?? 0);
if (holdMs > 0) {
  const finish = storageWriter.finish.bind(storageWriter);
  storageWriter.finish = async (...args) => {
    await new Promise((r) => setTimeout(r, holdMs));
    return finish(...args);
  };
}
const sd = seededState(seed);
process.stdout.write("ready\n");
try {
  await save(sd, { storageWriter });
  process.stdout.write("committed\n");
} catch (error) {
  const root = error instanceof CheckpointException ? error.failures[0]?.code : undefined;
  process.stdout.write(`error ${root ?? (error instanceof CheckpointError ? error.code : String(error))}\n`);
}
