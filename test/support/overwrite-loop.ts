// Child process for the load-during-overwrite tests: saves the state dicts of seeds argv[3],
// argv[3] + 1, … to argv[2] (a folder or an s3:// URI, reached through the standard AWS variables
// and S3_ENDPOINT) back to back, each one overwriting the last, printing "committed SEED" after
// each commit (or "error CODE"), until it is killed.
import { CheckpointError, CheckpointException, FileSystemWriter, save } from "@dcpjs/core";
import { S3StorageWriter } from "@dcpjs/s3";
import { seededState } from "./tensors.js";

const [path, first] = [process.argv[2]!, Number(process.argv[3])];
for (let seed = first; ; seed++) {
  const storageWriter = path.startsWith("s3://")
    ? new S3StorageWriter({ path })
    : new FileSystemWriter({ path });
  try {
    await save(seededState(seed), { storageWriter });
    process.stdout.write(`committed ${seed}\n`);
  } catch (error) {
    const root = error instanceof CheckpointException ? error.failures[0]?.code : undefined;
    process.stdout.write(
      `error ${root ?? (error instanceof CheckpointError ? error.code : String(error))}\n`,
    );
  }
}
