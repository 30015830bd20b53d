import type { FileSystemBase } from "./filesystem-base.js";

/** Options of {@link writeWholeFile}. */
export interface WriteWholeFileOptions {
  /** Make the bytes durable (`sync`) before closing. @default true */
  readonly sync?: boolean;
  /** Aborts the write; the stream then leaves nothing at `path`. */
  readonly signal?: AbortSignal;
}

/**
 * Writes a whole file through a backend — a `.metadata` (or its tmp), an index, an exported
 * file — front to back: opens it, writes the parts in order, syncs, closes; on any failure the
 * stream is aborted, so nothing is left at `path`. The twin of `readWholeFile`.
 *
 * @param fs - the backend.
 * @param path - the file.
 * @param parts - the bytes, in order (a part is not copied: it must not change until this resolves).
 * @param options - see {@link WriteWholeFileOptions}.
 * @throws the backend's errors (`ABORTED` when `signal` fires).
 */
export async function writeWholeFile(
  fs: FileSystemBase,
  path: string,
  parts: Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
  options: WriteWholeFileOptions = {},
): Promise<void> {
  const stream = await fs.createStream(path, "wb", options.signal ? { signal: options.signal } : {});
  try {
    for await (const part of parts) await stream.write(part);
    if (options.sync ?? true) await stream.sync();
    await stream.close();
  } catch (error) {
    await stream.abort(error);
    throw error;
  }
}
