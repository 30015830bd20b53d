import { CheckpointError } from "../errors.js";
import type { CleanupUploadsOptions } from "../storage/registry.js";

export type { CleanupUploadsOptions };

import { locate } from "./locate.js";

/**
 * Aborts the incomplete uploads a killed save left under a checkpoint (S3's multipart uploads),
 * through its backend's `cleanupUploads`. Run it only when no save is writing there, or pass
 * `startedBefore`.
 *
 * @param checkpointId - the checkpoint, on a backend with uploads to clean up (`s3://…`).
 * @param options - see {@link CleanupUploadsOptions}.
 * @returns the keys whose uploads were aborted.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` for a backend without uploads to clean up
 * (local folders); `ABORTED`; the backend's errors.
 */
export async function cleanupUploads(
  checkpointId: string,
  options: CleanupUploadsOptions = {},
): Promise<string[]> {
  const { backend } = locate(checkpointId);
  if (!backend.cleanupUploads)
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected a checkpoint on a backend with incomplete uploads to clean up (s3://BUCKET/PREFIX), got ${checkpointId} (the ${backend.name} backend has none)`,
    );
  return backend.cleanupUploads(checkpointId, options);
}
