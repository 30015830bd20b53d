// Child process for the killed-copy tests: copies the checkpoint argv[2] to argv[3] (folders or
// s3:// URIs; the standard AWS variables and S3_ENDPOINT) with `dcp cp`'s copyCheckpoint, one
// ranged read at a time, and prints "copying" once the first item's bytes have arrived, then
// "done" when the copy is committed.
import "@dcpjs/s3"; // s3:// sources and destinations
import { copyCheckpoint } from "@dcpjs/core/ops";

let announced = false;
await copyCheckpoint(process.argv[2]!, process.argv[3]!, {
  concurrency: 1,
  onProgress: (bytes) => {
    if (bytes > 0 && !announced) {
      announced = true;
      process.stdout.write("copying\n");
    }
  },
});
process.stdout.write("done\n");
