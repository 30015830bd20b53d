// The door of a whole checkpoint format: how its metadata is found, decoded and encoded, which item
// format frames its items, and (for formats written outside `FileSystemWriter`) how it is written.
import type { StateDict } from "../model/state-dict.js";
import type { Metadata } from "../plan/metadata.js";

/** One file of a checkpoint folder, open for ranged reads (a backend stream, read-only). */
export interface CheckpointFile {
  /** The file's size (bytes). */
  size(): Promise<number>;
  /**
   * Bytes `[offset, offset + length)` of the file.
   * @param offset - the first byte.
   * @param length - how many bytes.
   */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Closes the file. */
  close(): Promise<void>;
}

/**
 * What a format may read of the folder it is asked about: a read-only view of a backend at the
 * checkpoint's path (built by `readCheckpointMetadata` over a `FileSystemBase`). Every format asked
 * about one folder shares one view, so a file several formats look at is fetched once.
 */
export interface CheckpointFolder {
  /** The checkpoint's path or URI, as the backend names it (messages, `storageMeta.checkpointId`). */
  readonly path: string;
  /**
   * A whole (small) file of the folder, or undefined when there is none.
   * @param name - its path relative to the folder.
   * @param options - `random`: read it as a random-access file (an index, a sidecar). @default sequential
   * @throws the backend's errors other than not-found.
   */
  readFile(name: string, options?: { readonly random?: boolean }): Promise<Uint8Array | undefined>;
  /**
   * Opens a file of the folder for ranged reads (random access).
   * @param name - its path relative to the folder.
   * @throws `NotFoundError` when it is missing, and the backend's other errors.
   */
  open(name: string): Promise<CheckpointFile>;
  /** The names of the files directly in the folder; undefined when the backend cannot list. */
  list(): Promise<string[] | undefined>;
}

/** Where a format's writer puts its files: a folder of a backend (created already). */
export interface CheckpointOutput {
  /**
   * Writes one file front to back (nothing is left of it when this fails).
   * @param name - its path relative to the output folder.
   * @param parts - its bytes, in order (a part must not change until this resolves).
   */
  writeFile(name: string, parts: Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<void>;
}

/** The checkpoint a format's writer converts: its metadata and a way to load entries of it. */
export interface CheckpointSource {
  /** The source's metadata (every tensor of a dtype dcpjs holds: see `unsupportedDtypes`). */
  readonly metadata: Metadata;
  /**
   * Loads entries of the source into `target` in place (flat keys: an fqn is its own key), as `load`.
   * @param target - tensors, sharded tensors and values to fill.
   * @param signal - aborts the load.
   */
  load(target: StateDict, signal?: AbortSignal): Promise<void>;
}

/** One batch of a format's writer, as {@link CheckpointWriteOptions.onBatch} reports it. */
export interface CheckpointWriteBatch {
  /** Its number, from 0. */
  readonly index: number;
  /** How many batches the write has. */
  readonly count: number;
  /** The entries (fqns) it holds. */
  readonly keys: readonly string[];
  /** Its tensors' bytes. */
  readonly bytes: number;
}

/** Options every format's writer takes; a format reads its own further options by name. */
export interface CheckpointWriteOptions {
  /** Most bytes of tensors loaded at once, beyond the largest single tensor (bytes). The format's default applies when absent. */
  readonly batchBytes?: number;
  /** Called once each batch is written, while it is still held; a promise it returns is awaited. */
  readonly onBatch?: (batch: CheckpointWriteBatch) => void | Promise<void>;
  /** Aborts the write. */
  readonly signal?: AbortSignal;
  /** A format's own options (e.g. safetensors' `maxShardSize`, `sharded`, `checksums`). */
  readonly [option: string]: unknown;
}

/** What a format's writer wrote. */
export interface CheckpointWriteSummary {
  /** The files written, relative to the output folder. */
  readonly files: string[];
  /** Tensors (or chunks) written, and their bytes. */
  readonly tensors: number;
  readonly bytes: number;
  /** Non-tensor values written. */
  readonly values: number;
  /** Batches the tensors were loaded in. */
  readonly batches: number;
}

/**
 * A whole on-disk checkpoint format, registered with `registerCheckpointFormat`: dcpjs's own (v1,
 * v2 `.metadata`), PyTorch DCP's (a pickled `.metadata`, or per-rank `__{r}.metadata` files) and
 * Hugging Face safetensors (a folder read as a checkpoint and written by a converter, as DCP's
 * `HuggingFaceStorageReader` / `HuggingFaceStorageWriter`). `readCheckpointMetadata` asks the
 * registered formats in turn — first which one decodes the committed `.metadata`, then which one
 * finds metadata otherwise — and checks what it gets with `validateMetadata`, so a decoder returns
 * raw metadata and checks only the structure of its own bytes.
 *
 * A format that `FileSystemWriter` writes (its `format` option names it) commits its metadata as
 * `.metadata` — the atomic rename that is DCP's commit, and what overwrite safety, `dcp ls` and
 * `dcp gc` rely on — with {@link CheckpointFormat.encodeMetadata}, its items framed by
 * {@link CheckpointFormat.itemFormat}.
 */
export interface CheckpointFormat {
  /** Its name: `FileSystemWriter`'s `format` option and `convertCheckpoint`'s `to`. */
  readonly name: string;
  /** The item format (`ItemFormat.name`) its writer frames items with: `dcpjs` for raw items. */
  readonly itemFormat: string;
  /** What its metadata is called in messages, e.g. `.metadata (PyTorch DCP)`. @default ".metadata" */
  readonly what?: string;
  /**
   * Whether the bytes of a committed `.metadata` are this format's — its own magic, checked
   * before {@link CheckpointFormat.decodeMetadata}; a format without it claims every
   * `.metadata` the formats asked before it left (dcpjs's, asked last among those).
   * @param bytes - the file's bytes.
   */
  recognizes?(bytes: Uint8Array): boolean;
  /**
   * Decodes a committed `.metadata` it recognizes into raw metadata (checked by the caller with
   * `validateMetadata`).
   * @param bytes - the file's bytes.
   * @throws `MetadataError` for bytes that are not well-formed in this format.
   */
  decodeMetadata?(bytes: Uint8Array): Metadata;
  /**
   * Encodes the committed metadata as the bytes of `.metadata`.
   * @param metadata - the global metadata, storage entries filled in.
   */
  encodeMetadata?(metadata: Metadata): Uint8Array;
  /**
   * Finds the metadata of a checkpoint that has no `.metadata` (PyTorch's per-rank files, a
   * safetensors folder); asked only once no format decoded a `.metadata`.
   * @param folder - the checkpoint folder.
   * @returns the raw metadata, or undefined when the folder is not a checkpoint of this format.
   * @throws `MetadataError` when it is this format's, but malformed.
   */
  readMetadata?(folder: CheckpointFolder): Promise<Metadata | undefined>;
  /**
   * Writes `source` as a checkpoint of this format (for formats `FileSystemWriter` does not write).
   * @param source - the checkpoint to write.
   * @param output - where.
   * @param options - see {@link CheckpointWriteOptions}.
   * @returns what was written.
   */
  write?(
    source: CheckpointSource,
    output: CheckpointOutput,
    options: CheckpointWriteOptions,
  ): Promise<CheckpointWriteSummary>;
}
