import type { CreateStreamOptions, FileSystemBase } from "./filesystem-base.js";

/**
 * Reads a whole (small) file — a `.metadata`, an index, a sidecar — through a backend: opens it,
 * reads its size's worth of bytes, closes it.
 *
 * @param fs - the backend.
 * @param path - the file.
 * @param options - the stream's options (signal, `within`, `access`).
 * @returns the file's bytes.
 * @throws {@link NotFoundError} when it is missing, and the backend's other errors.
 */
export async function readWholeFile(
  fs: FileSystemBase,
  path: string,
  options: CreateStreamOptions = {},
): Promise<Uint8Array> {
  const stream = await fs.createStream(path, "rb", options);
  try {
    return await stream.read(0, await stream.size(options.signal), options.signal);
  } finally {
    await stream.close();
  }
}
