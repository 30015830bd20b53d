// Finding and reading a checkpoint's metadata: the registered checkpoint formats are asked in turn
// (formats/checkpoint-formats.ts) — which one reads the committed `.metadata`, else which one finds
// metadata otherwise (PyTorch's per-rank files, a safetensors folder).
import { CheckpointError, MetadataError, NotFoundError, throwIfAborted } from "../errors.js";
import type { CheckpointFile, CheckpointFolder } from "../formats/checkpoint-format.js";
import { checkpointFormats, decodeCommittedMetadata } from "../formats/checkpoint-formats.js";
import { computeChecksum } from "../formats/checksum.js";
import { validateMetadata } from "../formats/validate-metadata.js";
import type { Metadata } from "../plan/metadata.js";
import { metadataColumns } from "../plan/metadata-columns.js";
import { retry } from "../retry.js";
import type { FileSystemBase } from "./filesystem-base.js";
import { METADATA_FILE } from "./layout.js";
import { resolveReadCapabilities } from "./read-schedule.js";
import { readWholeFile } from "./read-whole-file.js";

/** A checkpoint's metadata and which commit it is. */
export interface CheckpointMetadataRead {
  readonly metadata: Metadata;
  /**
   * Which committed checkpoint was read from `.metadata`: its save id, or its length and CRC-32
   * when it has none (PyTorch's); undefined for per-rank metadata and safetensors.
   */
  readonly committed: string | undefined;
}

/**
 * A view of the folder at `path` for the checkpoint formats: whole files read once each (a file
 * several formats look at is fetched once), ranged reads, a listing where the backend has one.
 *
 * @param fs - the backend.
 * @param path - the checkpoint's path (as `fs.initPath` gives it).
 * @param signal - aborts every read.
 */
export function checkpointFolder(fs: FileSystemBase, path: string, signal?: AbortSignal): CheckpointFolder {
  const files = new Map<string, Promise<Uint8Array | undefined>>();
  const withSignal = signal ? { signal } : {};
  return {
    path,
    readFile(name, options) {
      let read = files.get(name);
      if (!read) {
        const file = fs.concatPath(path, name);
        read = readWholeFile(fs, file, {
          ...withSignal,
          ...(options?.random ? { access: "random" } : {}),
        }).catch((error: unknown) => {
          if (error instanceof NotFoundError) return undefined;
          throw error;
        });
        files.set(name, read);
      }
      return read;
    },
    async open(name): Promise<CheckpointFile> {
      const stream = await fs.createStream(fs.concatPath(path, name), "rb", {
        ...withSignal,
        access: "random",
      });
      return {
        size: () => stream.size(signal),
        read: (offset, length) => stream.read(offset, length, signal),
        close: () => stream.close(),
      };
    },
    async list() {
      if (!fs.list) return undefined;
      return (await fs.list(path, signal)).filter((f) => !f.folder).map((f) => f.name);
    },
  };
}

/**
 * The committed `.metadata` at `path` decoded by the format that recognizes it, or undefined when
 * there is none.
 */
async function readCommitted(
  fs: FileSystemBase,
  path: string,
  signal: AbortSignal | undefined,
): Promise<CheckpointMetadataRead | undefined> {
  const bytes = await checkpointFolder(fs, path, signal).readFile(METADATA_FILE);
  if (bytes === undefined) return undefined;
  const { metadata } = decodeCommittedMetadata(bytes);
  const committed = metadata.storageMeta.saveId ?? `${bytes.byteLength}:${computeChecksum("crc32", bytes)}`;
  return { metadata, committed };
}

/**
 * Reads the metadata of the checkpoint at `path`, asking the registered checkpoint formats in
 * turn: the first that recognizes the committed `.metadata` decodes it; without one, the first
 * that finds metadata otherwise — PyTorch's per-rank `__{rank}.metadata` files merged (a save
 * without rank coordination), a folder of `*.safetensors` files (Hugging Face's layout, as DCP's
 * `HuggingFaceStorageReader`). Whatever a format returns is checked by `validateMetadata`.
 *
 * @throws {@link CheckpointError} `INCOMPLETE_CHECKPOINT` when no format finds one (the save
 * never committed, or the path is wrong); {@link MetadataError} when one is malformed (a
 * `.metadata` is read again up to the backend's `rereadsOnMismatch` times first, through the one
 * `retry` policy).
 */
export async function readCheckpointMetadata(
  fs: FileSystemBase,
  path: string,
  signal?: AbortSignal,
): Promise<CheckpointMetadataRead> {
  throwIfAborted(signal);
  // A damaged response (CRC trailer or pickle) is requested again where the backend says it helps.
  const rereads = resolveReadCapabilities(fs.readCapabilities).rereadsOnMismatch;
  const committed = await retry(() => readCommitted(fs, path, signal), {
    attempts: rereads + 1,
    minDelayMs: 0,
    shouldRetry: (error) => error instanceof MetadataError,
    ...(signal ? { signal } : {}),
  });
  if (committed) return committed;
  const folder = checkpointFolder(fs, path, signal);
  for (const format of checkpointFormats()) {
    const metadata = await format.readMetadata?.(folder);
    if (metadata)
      return {
        metadata: validateMetadata(metadata, { what: format.what ?? ".metadata" }),
        committed: undefined,
      };
  }
  throw new CheckpointError(
    "INCOMPLETE_CHECKPOINT",
    `Expected a committed checkpoint at ${path} (a ${METADATA_FILE} file), found none: the save did not complete, or the path is wrong`,
    { cause: new NotFoundError(fs.concatPath(path, METADATA_FILE)) },
  );
}

/**
 * Whether the `.metadata` committed at `path` now refers to `relativePath` — undefined when there
 * is none any more, or it cannot be read (a load that lost a data file tells a newer commit,
 * `CHECKPOINT_SUPERSEDED`, from damage this way).
 */
export async function committedRefersTo(
  fs: FileSystemBase,
  path: string,
  relativePath: string,
): Promise<boolean | undefined> {
  try {
    const now = await readCommitted(fs, path, undefined);
    if (!now) return now;
    const s = metadataColumns(now.metadata)?.storage;
    if (s) {
      // Columns: the file's index, then whether any item lies in it — no entry built per item.
      const file = s.files.indexOf(relativePath);
      return file >= 0 && s.file.includes(file);
    }
    return [...now.metadata.storageData.values()].some((i) => i.relativePath === relativePath);
  } catch {
    return undefined;
  }
}
