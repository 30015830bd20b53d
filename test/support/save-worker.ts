// Child process for overwrite and race tests: prints "ready", saves 16 tensors seeded by argv[3]
// to argv[2] (overwrite per argv[4], "true" or "false"), then prints "committed" or "error CODE".
import { CheckpointError, CheckpointException, save } from "@dcpjs/core";
import { seededState } from "./tensors.js";

const [dir, seed, overwrite] = [process.argv[2]!, Number(process.argv[3]), process.argv[4] !== "false"];
const sd = seededState(seed);
process.stdout.write("ready\n");
try {
  await save(sd, { checkpointId: dir, ...(overwrite ? {} : { storageWriter: await writerFor(dir) }) });
  process.stdout.write("committed\n");
} catch (error) {
  const root = error instanceof CheckpointException ? error.failures[0]?.code : undefined;
  const code = root ?? (error instanceof CheckpointError ? error.code : String(error));
  process.stdout.write(`error ${code}\n`);
}

async function writerFor(path: string) {
  if (path.startsWith("s3://")) {
    const { S3StorageWriter } = await import("@dcpjs/s3");
    return new S3StorageWriter({ path, overwrite: false });
  }
  const { FileSystemWriter } = await import("@dcpjs/core");
  return new FileSystemWriter({ path, overwrite: false });
}
