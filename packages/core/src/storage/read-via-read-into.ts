import { assertReadRange } from "../validate.js";
import type { FileReadStream } from "./filesystem-base.js";

/**
 * `FileReadStream.read` for a stream whose own primitive is `readInto`: a new buffer of `length`
 * bytes, filled from `offset`.
 *
 * @param stream - the stream (its `readInto`).
 * @param offset - byte offset in the file.
 * @param length - bytes to read.
 * @param signal - aborts the read.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` (a rejected promise) when `offset` or
 * `length` is not an integer ≥ 0; what the stream's `readInto` throws.
 */
export async function readViaReadInto(
  stream: Required<Pick<FileReadStream, "readInto">>,
  offset: number,
  length: number,
  signal?: AbortSignal,
): Promise<Uint8Array> {
  assertReadRange(offset, length);
  const out = new Uint8Array(length);
  await stream.readInto(offset, out, signal);
  return out;
}
