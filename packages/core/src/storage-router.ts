import { CheckpointError } from "./errors.js";
import { FileSystemReader } from "./filesystem-reader.js";
import { FileSystemWriter } from "./filesystem-writer.js";
import type { StorageReader, StorageWriter } from "./storage.js";

/** The package that handles `s3://` checkpoint ids, loaded only when one is used. */
const S3_PACKAGE = "@dcpjs/s3";

interface S3Module {
  S3StorageWriter: new (options: { path: string }) => StorageWriter;
  S3StorageReader: new (options: { path: string }) => StorageReader;
}

async function importS3(checkpointId: string): Promise<S3Module> {
  try {
    const specifier: string = S3_PACKAGE;
    return (await import(specifier)) as S3Module;
  } catch (cause) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected the ${S3_PACKAGE} package to be installed to use ${checkpointId}, but it could not be loaded`,
      { cause },
    );
  }
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
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` for a missing id, an unknown scheme, or a
 * missing `@dcpjs/s3`.
 */
export async function createStorageWriter(checkpointId: string | undefined): Promise<StorageWriter> {
  const id = checkId(checkpointId);
  if (id.startsWith("s3://")) return new (await importS3(id)).S3StorageWriter({ path: id });
  if (id.includes("://")) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected a local path or an s3:// URI as checkpointId, got ${id}`,
    );
  }
  return new FileSystemWriter({ path: id });
}

/**
 * The storage reader for a checkpoint id; see {@link createStorageWriter}.
 *
 * @param checkpointId - a local path or `s3://bucket/prefix`.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` as {@link createStorageWriter}.
 */
export async function createStorageReader(checkpointId: string | undefined): Promise<StorageReader> {
  const id = checkId(checkpointId);
  if (id.startsWith("s3://")) return new (await importS3(id)).S3StorageReader({ path: id });
  if (id.includes("://")) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected a local path or an s3:// URI as checkpointId, got ${id}`,
    );
  }
  return new FileSystemReader({ path: id });
}
