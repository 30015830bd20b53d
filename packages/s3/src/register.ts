import { registerStorageBackend, type StorageBackend } from "@dcpjs/core/extend";
import { S3StorageReader } from "./s3-storage-reader.js";
import { S3StorageWriter } from "./s3-storage-writer.js";

/**
 * The `s3://` backend of the storage registry: `S3StorageWriter` and `S3StorageReader` with the
 * client built from the standard AWS variables (and `S3_ENDPOINT`). Registered when `@dcpjs/s3`
 * is imported.
 */
export const s3StorageBackend: StorageBackend = {
  name: "s3",
  checkpointIdForm: "s3://BUCKET/PREFIX",
  validateCheckpointId: (id) => S3StorageWriter.validateCheckpointId(id),
  createWriter: (path, options) => new S3StorageWriter({ ...options, path }),
  createReader: (path, options) => new S3StorageReader({ ...options, path }),
};

registerStorageBackend(s3StorageBackend);
