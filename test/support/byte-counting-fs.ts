import { LocalFileSystem } from "@dcpjs/core";
import type { CreateStreamOptions, FileReadStream } from "@dcpjs/core/extend";

/** A LocalFileSystem that counts the data bytes its read streams deliver. */
export class ByteCountingFileSystem extends LocalFileSystem {
  bytesRead = 0;

  override async createStream(
    path: string,
    mode: "rb",
    options?: CreateStreamOptions,
  ): Promise<FileReadStream>;
  override async createStream(path: string, mode: "wb", options?: CreateStreamOptions): Promise<never>;
  override async createStream(path: string, mode: "rb" | "wb", options?: CreateStreamOptions) {
    const stream = (await super.createStream(path, mode as "rb", options)) as FileReadStream;
    if (!path.endsWith(".distcp")) return stream;
    const count = (n: number) => {
      this.bytesRead += n;
    };
    return {
      ...stream,
      size: () => stream.size(),
      close: () => stream.close(),
      read: async (offset: number, length: number, signal?: AbortSignal) => {
        const bytes = await stream.read(offset, length, signal);
        count(bytes.byteLength);
        return bytes;
      },
      ...(stream.readInto
        ? {
            readInto: async (offset: number, target: Uint8Array, signal?: AbortSignal) => {
              await stream.readInto!(offset, target, signal);
              count(target.byteLength);
            },
          }
        : {}),
      ...(stream.readvInto
        ? {
            readvInto: async (offset: number, targets: Uint8Array[], signal?: AbortSignal) => {
              await stream.readvInto!(offset, targets, signal);
              count(targets.reduce((n, t) => n + t.byteLength, 0));
            },
          }
        : {}),
    } as FileReadStream;
  }
}
