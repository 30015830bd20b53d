import type { LoadPlan, Metadata, SavePlan, StorageMeta, WriteResult } from "../plan/metadata.js";
import type { LoadPlanner, SavePlanner } from "../plan/planner.js";
import type { FileSystemBase } from "./filesystem-base.js";
import type { UnchangedItems } from "./incremental-base.js";
import type { BaseLease } from "./references.js";

/** What a storage writer or reader learns about its rank before planning. */
export interface StorageSetUp {
  /** Whether this rank is the coordinator (writes `.metadata`). */
  readonly isCoordinator: boolean;
  /** This rank. */
  readonly rank: number;
  /** The number of ranks. */
  readonly worldSize: number;
}

/**
 * Writes a checkpoint's data and commits its metadata, as DCP's `StorageWriter`.
 *
 * Lifecycle: `reset` → `setUpStorageWriter` → `prepareLocalPlan` (every rank) →
 * `prepareGlobalPlan` (coordinator) → `writeData` (every rank) → `finish` (coordinator, last).
 */
export interface StorageWriter {
  /**
   * Points the writer at a new checkpoint id and starts a new save.
   * @param checkpointId - a path or URI; keeps the current one when omitted.
   */
  reset(checkpointId?: string): void;
  /**
   * Receives this rank's place in the group.
   * @param setUp - coordinator flag, rank, world size.
   */
  setUpStorageWriter(setUp: StorageSetUp): void;
  /**
   * Storage-specific checks and changes to this rank's local plan (e.g. the overwrite guard).
   * @param plan - the local plan.
   */
  prepareLocalPlan(plan: SavePlan): Promise<SavePlan>;
  /**
   * Storage-specific changes to the global plan (e.g. file prefixes), coordinator only.
   * @param plans - one plan per rank.
   */
  prepareGlobalPlan(plans: SavePlan[]): SavePlan[];
  /**
   * Writes this rank's items.
   * @param plan - this rank's final plan.
   * @param planner - resolves each item's bytes.
   * @param signal - aborts the write.
   * @returns one result per item.
   */
  writeData(plan: SavePlan, planner: SavePlanner, signal?: AbortSignal): Promise<WriteResult[]>;
  /**
   * Commits the checkpoint (coordinator only): writes `.metadata` — the global metadata with
   * where every item is and the save's ids — last, atomically.
   * @param metadata - the global metadata from the planner (storage entries still empty).
   * @param results - every rank's write results.
   * @param signal - aborts the commit.
   * @returns the metadata as committed (`save` returns it); a writer that returns nothing leaves
   * `metadata` as the result.
   */
  finish(metadata: Metadata, results: WriteResult[][], signal?: AbortSignal): Promise<Metadata | undefined>;
  /** Ids recorded in the metadata. */
  storageMeta(): StorageMeta;
  /**
   * Optional: on a rank that lost contact with the coordinator after writing its data, the
   * committed metadata if this save's commit happened anyway (it references this rank's files),
   * else `undefined`. `save` asks it before reporting a `TIMEOUT` of the write step.
   * @param signal - aborts the read.
   */
  committedMetadata?(signal?: AbortSignal): Promise<Metadata | undefined>;
  /**
   * Optional: makes this save incremental (`save`'s `base`, every rank, before `writeData`):
   * items whose bytes equal the base's — or that `unchanged` declares so — reference the base's
   * files instead of being written. Holds a lease on the base until released (`save` releases it
   * after the commit or the failure); `finish` confirms it just before the commit.
   * @param baseId - the base checkpoint's id, a sibling of this one.
   * @param options - `unchanged`: items declared unchanged (not hashed).
   * @param signal - aborts the base's read.
   * @returns the lease.
   */
  useBase?(
    baseId: string,
    options?: { readonly unchanged?: UnchangedItems },
    signal?: AbortSignal,
  ): Promise<BaseLease>;
}

/**
 * Reads a checkpoint's metadata and data, as DCP's `StorageReader`.
 *
 * Lifecycle: `reset` → `readMetadata` → `setUpStorageReader` → `prepareLocalPlan` →
 * `prepareGlobalPlan` (coordinator) → `readData`.
 */
export interface StorageReader {
  /**
   * Points the reader at a new checkpoint id and starts a new load.
   * @param checkpointId - a path or URI; keeps the current one when omitted.
   */
  reset(checkpointId?: string): void;
  /**
   * Reads and verifies `.metadata`.
   * @param signal - aborts the read.
   */
  readMetadata(signal?: AbortSignal): Promise<Metadata>;
  /**
   * Receives the metadata and this rank's place in the group.
   * @param metadata - the checkpoint's metadata.
   * @param setUp - coordinator flag, rank, world size.
   */
  setUpStorageReader(metadata: Metadata, setUp: StorageSetUp): void;
  /**
   * Storage-specific changes to this rank's local plan (e.g. sorting by file offset).
   * @param plan - the local plan.
   */
  prepareLocalPlan(plan: LoadPlan): LoadPlan;
  /**
   * Storage-specific changes to the global plan, coordinator only.
   * @param plans - one plan per rank.
   */
  prepareGlobalPlan(plans: LoadPlan[]): LoadPlan[];
  /**
   * Reads this rank's items and hands them to the planner.
   * @param plan - this rank's final plan.
   * @param planner - receives bytes and tensors.
   * @param signal - aborts the read.
   */
  readData(plan: LoadPlan, planner: LoadPlanner, signal?: AbortSignal): Promise<void>;
}

/**
 * A storage writer or reader that works through a {@link FileSystemBase} — `FileSystemWriter`,
 * `FileSystemReader`, and those that compose them (`S3StorageWriter`, `S3StorageReader`) — and
 * says so: its file system and its normalised checkpoint path.
 */
export interface FileSystemBacked {
  /** The backend. */
  readonly fs: FileSystemBase;
  /** The normalised checkpoint path. */
  readonly checkpointPath: string;
}

/**
 * Whether a storage writer or reader exposes its file system ({@link FileSystemBacked}): a
 * structural check, so that one composing a `FileSystemWriter` or `FileSystemReader` counts too.
 * @param storage - a writer or reader.
 */
export function isFileSystemBacked<S extends StorageWriter | StorageReader>(
  storage: S,
): storage is S & FileSystemBacked {
  const { fs, checkpointPath } = storage as Partial<FileSystemBacked>;
  return typeof fs?.createStream === "function" && typeof checkpointPath === "string";
}
