// Child process for the read-cache lock test: starts fetching block 0 of a made-up object into the
// cache folder argv[2] (lockStaleMs 2,000) with a fetch that never ends, prints "fetching" once it
// holds the block's lock, and waits to be killed.
import { S3ReadCache } from "@dcpjs/s3";

setInterval(() => {}, 1000); // stay alive, as a process waiting on a socket does
const cache = new S3ReadCache({ dir: process.argv[2]!, lockStaleMs: 2000 });
await cache.block({ etag: "held", size: 1024 }, 0, () => {
  process.stdout.write("fetching\n");
  return new Promise<Uint8Array>(() => {});
});
