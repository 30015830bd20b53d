import { createRequire } from "node:module";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { CheckpointError } from "../errors.js";
import { FileSystemReader } from "./filesystem-reader.js";
import { FileSystemWriter } from "./filesystem-writer.js";
import type { ProgressCallback } from "./progress.js";
import type { StorageReader, StorageWriter } from "./storage.js";

/** The package that handles `s3://` checkpoint ids, loaded only when one is used. */
const S3_PACKAGE = "@dcpjs/s3";

/** Options the router passes to whichever storage it picks. */
export interface StorageRouterOptions {
  /** Files per rank written (and read) concurrently. @default 1 for writers, 4 for readers */
  readonly threadCount?: number;
  /** Writers only: replace an existing checkpoint. @default true */
  readonly overwrite?: boolean;
  /** Called after each item is written or read. */
  readonly onProgress?: ProgressCallback;
}

interface S3Module {
  S3StorageWriter: new (options: { path: string } & StorageRouterOptions) => StorageWriter;
  S3StorageReader: new (options: { path: string } & StorageRouterOptions) => StorageReader;
}

/**
 * Loads `@dcpjs/s3`: from here (an optional peer dependency), else from the application's entry
 * point or working directory, where a package manager that isolates dependencies (pnpm) puts it.
 */
async function importS3(checkpointId: string): Promise<S3Module> {
  const specifier: string = S3_PACKAGE;
  let firstError: unknown;
  try {
    return (await import(specifier)) as S3Module;
  } catch (error) {
    firstError = error;
  }
  const bases = [process.argv[1], join(process.cwd(), "index.js")].filter(
    (b): b is string => typeof b === "string",
  );
  for (const base of bases) {
    try {
      const resolved = createRequire(base).resolve(specifier);
      return (await import(pathToFileURL(resolved).href)) as S3Module;
    } catch {
      // try the next base
    }
  }
  throw new CheckpointError(
    "INVALID_ARGUMENT",
    `Expected the ${S3_PACKAGE} package to be installed to use ${checkpointId}, but it could not be loaded`,
    { cause: firstError },
  );
}

function checkId(checkpointId: string | undefined): string {
  if (typeof checkpointId !== "string" || checkpointId.length === 0) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      "Expected checkpointId (a folder or s3:// URI) or a storageWriter/storageReader, got neither",
    );
  }
  return checkpointId;
}

/**
 * The storage writer for a checkpoint id, as DCP's `_storage_setup`: `s3://…` → `S3StorageWriter`
 * from `@dcpjs/s3` (imported on first use, so local-only users never load the AWS SDK); any other
 * id without a scheme → {@link FileSystemWriter}.
 *
 * @param checkpointId - a local path or `s3://bucket/prefix`.
 * @param options - thread count, overwrite, progress (see {@link StorageRouterOptions}).
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` for a missing id, an unknown scheme, or a
 * missing `@dcpjs/s3`.
 */
export async function createStorageWriter(
  checkpointId: string | undefined,
  options: StorageRouterOptions = {},
): Promise<StorageWriter> {
  const id = checkId(checkpointId);
  if (id.startsWith("s3://")) return new (await importS3(id)).S3StorageWriter({ ...options, path: id });
  if (id.includes("://")) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected a local path or an s3:// URI as checkpointId, got ${id}`,
    );
  }
  return new FileSystemWriter({ ...options, path: id });
}

/**
 * The storage reader for a checkpoint id; see {@link createStorageWriter}.
 *
 * @param checkpointId - a local path or `s3://bucket/prefix`.
 * @param options - thread count and progress (see {@link StorageRouterOptions}).
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` as {@link createStorageWriter}.
 */
export async function createStorageReader(
  checkpointId: string | undefined,
  options: StorageRouterOptions = {},
): Promise<StorageReader> {
  const id = checkId(checkpointId);
  if (id.startsWith("s3://")) return new (await importS3(id)).S3StorageReader({ ...options, path: id });
  if (id.includes("://")) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected a local path or an s3:// URI as checkpointId, got ${id}`,
    );
  }
  const { overwrite: _, ...readerOptions } = options;
  return new FileSystemReader({ ...readerOptions, path: id });
}
