import { CheckpointError, FileSystemReader, FileSystemWriter, NotFoundError } from "@dcpjs/core";
import {
  assertReadRange,
  type CreateStreamOptions,
  type FileEntry,
  type FileReadStream,
  type FileSystemBase,
  type FileWriteStream,
  type RenameOptions,
  type StorageBackend,
  type StreamMode,
} from "@dcpjs/core/extend";

/**
 * A whole storage backend in ~100 lines, to show (and test) that one is added by implementing
 * FileSystemBase and registering it: files live in a Map keyed by `mem://…` paths; a written file
 * appears at its path when its stream closes.
 */
export class MemoryFileSystem implements FileSystemBase {
  readonly files = new Map<string, { bytes: Uint8Array; modifiedMs: number }>();

  async createStream(path: string, mode: "wb", options?: CreateStreamOptions): Promise<FileWriteStream>;
  async createStream(path: string, mode: "rb", options?: CreateStreamOptions): Promise<FileReadStream>;
  async createStream(path: string, mode: StreamMode): Promise<FileWriteStream | FileReadStream> {
    if (mode === "wb") {
      const chunks: Uint8Array[] = [];
      let written = 0;
      return {
        write: async (chunk) => {
          chunks.push(chunk.slice());
          written += chunk.byteLength;
        },
        tell: () => written,
        sync: async () => {},
        close: async () => {
          this.files.set(path, { bytes: concat(chunks, written), modifiedMs: Date.now() });
        },
        abort: async () => {
          chunks.length = 0;
        },
      };
    }
    if (mode === "rb") {
      const file = () => {
        const f = this.files.get(path);
        if (!f) throw new NotFoundError(path);
        return f.bytes;
      };
      return {
        read: async (offset, length) => {
          assertReadRange(offset, length);
          const bytes = file();
          if (offset + length > bytes.byteLength)
            throw new CheckpointError("TRUNCATED", `Expected ${length} bytes at ${offset} of ${path}`);
          return bytes.slice(offset, offset + length);
        },
        size: async () => file().byteLength,
        close: async () => {},
      };
    }
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Invalid mode=${JSON.stringify(mode)}: create_stream only supports rb (read mode) & wb (write mode)`,
    );
  }

  concatPath(path: string, suffix: string): string {
    return `${path.replace(/\/+$/, "")}/${suffix}`;
  }

  initPath(path: string): string {
    return path;
  }

  async rename(path: string, newPath: string, options?: RenameOptions): Promise<void> {
    const f = this.files.get(path);
    if (!f) throw new NotFoundError(path);
    if (options?.overwrite === false && this.files.has(newPath))
      throw new CheckpointError("ALREADY_EXISTS", `Expected no file at ${newPath}, found one`);
    this.files.set(newPath, f);
    this.files.delete(path);
  }

  async mkdir(): Promise<void> {}

  async exists(path: string): Promise<boolean> {
    return this.files.has(path);
  }

  async rmFile(path: string): Promise<void> {
    this.files.delete(path);
  }

  async list(path: string): Promise<FileEntry[]> {
    const prefix = `${path.replace(/\/+$/, "")}/`;
    const entries = new Map<string, FileEntry>();
    for (const [p, f] of this.files) {
      if (!p.startsWith(prefix)) continue;
      const [name, ...rest] = p.slice(prefix.length).split("/");
      entries.set(name!, {
        name: name!,
        folder: rest.length > 0,
        size: rest.length > 0 ? 0 : f.bytes.byteLength,
        modifiedMs: rest.length > 0 ? 0 : f.modifiedMs,
      });
    }
    return [...entries.values()];
  }

  validateCheckpointId(checkpointId: string): boolean {
    return checkpointId.startsWith("mem://");
  }
}

/** The `mem://` backend over one {@link MemoryFileSystem}, for the storage registry. */
export function memoryBackend(fs: MemoryFileSystem): StorageBackend {
  return {
    name: "mem",
    validateCheckpointId: (id) => fs.validateCheckpointId(id),
    fileSystem: (path) => ({ fs, path: fs.initPath(path) }),
    createWriter: (path, options) => new FileSystemWriter({ ...options, path, fs }),
    createReader: (path, options) => new FileSystemReader({ ...options, path, fs }),
  };
}

/** The chunks' bytes one after the other, in a new array (no `Buffer`: the file system runs in a browser too). */
function concat(chunks: readonly Uint8Array[], bytes: number): Uint8Array {
  const out = new Uint8Array(bytes);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  return out;
}
