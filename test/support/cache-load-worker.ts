// Child process for the S3 read-cache tests: loads the seeded state dict (test/support/tensors.ts)
// from argv[2] (an s3:// URI; the standard AWS variables and S3_ENDPOINT) through S3StorageReader,
// with the read cache in argv[3] unless it is "-", and prints one JSON line: the seed it loaded,
// the GETs it sent, the body bytes S3 returned, and the cache's counters.
import { load } from "@dcpjs/core";
import { createS3Client, S3StorageReader } from "@dcpjs/s3";
import { seededTarget, whichSeed } from "./tensors.js";

const [uri, cacheDir] = [process.argv[2]!, process.argv[3]!];
const client = createS3Client();
let gets = 0;
let bytes = 0;
client.middlewareStack.add(
  (next, context) => async (args) => {
    const result = await next(args);
    if (context.commandName === "GetObjectCommand") {
      gets++;
      bytes += (result.output as { ContentLength?: number }).ContentLength ?? 0;
    }
    return result;
  },
  { step: "initialize", name: "cacheWorkerCounter" },
);
const reader = new S3StorageReader({ path: uri, client, ...(cacheDir !== "-" ? { cacheDir } : {}) });
const sd = seededTarget();
await load(sd, { storageReader: reader });
await reader.readCache?.settled();
process.stdout.write(
  `${JSON.stringify({ seed: whichSeed(sd, [1, 2, 3]) ?? null, gets, bytes, cache: reader.readCache?.stats ?? null })}\n`,
);
