// Child process for the HTTP read-cache test: loads the seeded state dict (test/support/tensors.ts)
// from argv[2] (an http:// checkpoint URL) through HttpStorageReader with the read cache in
// argv[3], and prints one JSON line: the seed it loaded and the cache's counters.
import { load } from "@dcpjs/core";
import { HttpStorageReader } from "@dcpjs/http";
import { seededTarget, whichSeed } from "./tensors.js";

const [url, cacheDir] = [process.argv[2]!, process.argv[3]!];
const reader = new HttpStorageReader({ url, cacheDir });
const sd = seededTarget();
await load(sd, { storageReader: reader });
await reader.readCache?.settled();
process.stdout.write(
  `${JSON.stringify({ seed: whichSeed(sd, [1, 2, 3]) ?? null, cache: reader.readCache?.stats ?? null })}\n`,
);
