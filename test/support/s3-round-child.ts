// Child process for the CPU-starved S3 tests: saves a state dict to argv[2] through the S3
// endpoint argv[3] (a fault proxy) and, with argv[4] = "load", loads it back with each reader and
// compares every byte; argv[5], if given, is the client's maxAttempts (default the library's).
// Prints "ok", or "failed <CODE…> | <message>" for a typed failure. It has NO uncaughtException / unhandledRejection listener on purpose: an error nobody handles kills it
// (exit code 1, the stack on stderr), which is what the tests look for.
import { CheckpointError, CheckpointException, load, save } from "@dcpjs/core";
import { S3ReaderConstructor, S3StorageReader, S3StorageWriter } from "@dcpjs/s3";
import { roundState, roundTarget, sameRoundState } from "./s3-round-state.js";

const [uri, endpoint, mode] = [process.argv[2]!, process.argv[3]!, process.argv[4] ?? "save"];
const maxAttempts = process.argv[5] ? Number(process.argv[5]) : undefined;
const clientConfig = {
  endpoint,
  ...(maxAttempts ? { maxAttempts } : {}),
  socketTimeoutMs: 5000,
  connectionTimeoutMs: 5000,
  partSize: 5 * 1024 * 1024,
};
/** "CODE[,CODE…] | the first failure's message", one line; an untyped error is rethrown. */
const codes = (error: unknown): string => {
  if (error instanceof CheckpointException) {
    const first = error.failures[0]?.error;
    const message = first instanceof Error ? first.message : String(first);
    return `${error.failures.map((f) => f.code).join(",")} | ${message.replaceAll("\n", " ")}`;
  }
  if (error instanceof CheckpointError) return `${error.code} | ${error.message.replaceAll("\n", " ")}`;
  throw error; // untyped: let it kill the process, loudly
};
try {
  await save(roundState(), {
    storageWriter: new S3StorageWriter({ path: uri, clientConfig, threadCount: 2 }),
  });
  if (mode === "load") {
    for (const readerConstructor of [
      S3ReaderConstructor.sequential(),
      S3ReaderConstructor.rangeBased(),
      S3ReaderConstructor.dcpOptimized({ parallelThreshold: 4 * 1024 * 1024 }),
    ]) {
      const sd = roundTarget();
      await load(sd, { storageReader: new S3StorageReader({ path: uri, clientConfig, readerConstructor }) });
      if (!sameRoundState(sd, roundState())) {
        process.stdout.write("mismatch\n");
        process.exit(3);
      }
    }
  }
  process.stdout.write("ok\n");
} catch (error) {
  process.stdout.write(`failed ${codes(error)}\n`);
}
