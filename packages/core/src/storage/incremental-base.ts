// An incremental save's base: which checkpoint it is (a sibling of the one saved), its metadata,
// and which of the items planned may reference the base's bytes instead of being written.
import { CheckpointError, NotFoundError, throwIfAborted } from "../errors.js";
import { decodeCommittedMetadata } from "../formats/checkpoint-formats.js";
import { itemChecksum } from "../formats/checksum.js";
import { findChunk, sameShape } from "../model/geometry.js";
import { type Metadata, metadataIndexKey, type StorageInfo, type WriteItem } from "../plan/metadata.js";
import type { FileSystemBase } from "./filesystem-base.js";
import { METADATA_FILE } from "./layout.js";
import { readWholeFile } from "./read-whole-file.js";
import { checkpointName, siblingCheckpointId } from "./references.js";

/**
 * Most distinct checkpoints an incremental checkpoint references (its base and the checkpoints
 * the base itself references: references are flat, so a chain adds names, not hops). Past it, the
 * items referencing the checkpoints that hold the fewest of the base's referenced bytes are
 * written anew (see {@link droppedReferences}), so a long chain of incremental saves keeps at most
 * this many checkpoints alive and a load opens files in at most this many folders.
 */
export const MAX_REFERENCED_CHECKPOINTS = 64;

/**
 * Items an incremental save declares unchanged since its base (frozen parameters): referenced
 * without hashing. A predicate over fqns, or a list of fqns and prefixes — an entry matches the
 * fqn equal to it and every fqn that starts with it followed by a dot (`"encoder"` matches
 * `encoder.layer.0.weight`).
 */
export type UnchangedItems = ((fqn: string) => boolean) | readonly string[];

/** An incremental save's base, read. */
export interface IncrementalBase {
  /** The base's id (path or URI, normalised by the file system). */
  readonly path: string;
  /** Its name: the id's last segment, a sibling of the checkpoint saved. */
  readonly name: string;
  /** Its committed metadata. */
  readonly metadata: Metadata;
  /** Checkpoints whose references are not taken over (past {@link MAX_REFERENCED_CHECKPOINTS}). */
  readonly dropped: ReadonlySet<string>;
  /** Whether an fqn is declared unchanged. */
  readonly unchanged: (fqn: string) => boolean;
}

/**
 * A predicate over fqns from {@link UnchangedItems}.
 * @param unchanged - the option; absent: nothing is declared unchanged.
 */
export function unchangedPredicate(unchanged: UnchangedItems | undefined): (fqn: string) => boolean {
  if (unchanged === undefined) return () => false;
  if (typeof unchanged === "function") return unchanged;
  const exact = new Set(unchanged);
  return (fqn) => {
    if (exact.has(fqn)) return true;
    for (let dot = fqn.indexOf("."); dot >= 0; dot = fqn.indexOf(".", dot + 1))
      if (exact.has(fqn.slice(0, dot))) return true;
    return false;
  };
}

/**
 * Reads an incremental save's base: checks that it is a sibling of the checkpoint saved (same
 * parent folder or prefix, same backend) and another checkpoint, then reads its `.metadata`,
 * which must be dcpjs's own.
 *
 * @param fs - the file system of the checkpoint saved (the base's too).
 * @param checkpointPath - the checkpoint saved, normalised (`fs.initPath`).
 * @param baseId - the base's id as given (`save`'s `base`).
 * @param unchanged - items declared unchanged.
 * @param signal - aborts the read.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when the base is not a sibling, is the
 * checkpoint itself, or is not a dcpjs checkpoint; `NOT_FOUND` naming the base when it has no
 * committed `.metadata`; {@link MetadataError} when that is malformed.
 */
export async function readIncrementalBase(
  fs: FileSystemBase,
  checkpointPath: string,
  baseId: string,
  unchanged: UnchangedItems | undefined,
  signal?: AbortSignal,
): Promise<IncrementalBase> {
  const name = checkpointName(baseId);
  const path = fs.initPath(baseId);
  const sibling = fs.initPath(siblingCheckpointId(checkpointPath, name));
  if (sibling !== path) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected base to be a sibling of the checkpoint saved (${sibling}: same parent folder or prefix), got ${baseId}`,
    );
  }
  if (name === checkpointName(checkpointPath)) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected base to be another checkpoint than the one saved, got ${baseId}`,
    );
  }
  throwIfAborted(signal);
  let bytes: Uint8Array;
  try {
    bytes = await readWholeFile(fs, fs.concatPath(path, METADATA_FILE), signal ? { signal } : {});
  } catch (error) {
    if (error instanceof NotFoundError)
      throw new CheckpointError(
        "NOT_FOUND",
        `Expected the base checkpoint ${baseId} to be committed (its ${METADATA_FILE}), found none`,
        { cause: error },
      );
    throw error;
  }
  const { metadata, format } = decodeCommittedMetadata(bytes);
  if (format.name !== "dcpjs")
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected base ${baseId} to be a dcpjs checkpoint, got a ${format.name} one`,
    );
  return {
    path,
    name,
    metadata,
    dropped: droppedReferences(metadata, name),
    unchanged: unchangedPredicate(unchanged),
  };
}

/**
 * The checkpoints an incremental save on this base does not reference (it writes their items
 * anew): none while the base and the checkpoints it references are at most
 * {@link MAX_REFERENCED_CHECKPOINTS}; else those holding the fewest of its bytes (ties: by name),
 * so that the fewest bytes are written again. Decided from the base alone, so every rank decides
 * alike.
 *
 * @param metadata - the base's metadata.
 * @param name - the base's name.
 */
export function droppedReferences(metadata: Metadata, name: string): Set<string> {
  const bytes = new Map<string, number>();
  for (const info of metadata.storageData.values()) {
    const holder = info.baseCheckpoint ?? name;
    bytes.set(holder, (bytes.get(holder) ?? 0) + info.length);
  }
  if (bytes.size <= MAX_REFERENCED_CHECKPOINTS) return new Set();
  const order = [...bytes].sort(([a, x], [b, y]) => x - y || (a < b ? -1 : a > b ? 1 : 0));
  return new Set(order.slice(0, bytes.size - MAX_REFERENCED_CHECKPOINTS).map(([holder]) => holder));
}

/**
 * The base's storage entry for the item, when the base stored the very same item — same fqn, and
 * for a tensor the same chunk (offsets, sizes) and dtype — as raw dcpjs bytes with a checksum, in
 * a checkpoint this save may reference (not itself, not a dropped one); else undefined.
 *
 * @param base - the base.
 * @param item - the item planned.
 * @param ownName - the name of the checkpoint saved.
 */
export function baseEntryFor(
  base: IncrementalBase,
  item: WriteItem,
  ownName: string,
): StorageInfo | undefined {
  const info = sameItemInBase(base, item);
  if (!info) return undefined;
  const holder = info.baseCheckpoint ?? base.name;
  return holder === ownName || base.dropped.has(holder) ? undefined : info;
}

/**
 * The base's storage entry for the item when the base stored the very same item as raw dcpjs
 * bytes with a checksum (see {@link baseEntryFor}), whichever checkpoint holds its file.
 *
 * @param base - the base.
 * @param item - the item planned.
 */
export function sameItemInBase(base: IncrementalBase, item: WriteItem): StorageInfo | undefined {
  const entry = base.metadata.stateDictMetadata.get(item.index.fqn);
  if (item.type === "bytes") {
    if (entry?.type !== "bytes") return undefined;
  } else {
    const td = item.tensorData;
    if (entry?.type !== "tensor" || entry.properties.dtype !== td.properties.dtype) return undefined;
    const chunk = findChunk(entry.chunks, td.chunk.offsets);
    if (!chunk || !sameShape(chunk.sizes, td.chunk.sizes)) return undefined;
  }
  const info = base.metadata.storageData.get(metadataIndexKey(item.index));
  if (!info || itemChecksum(info) === undefined) return undefined;
  if ((info.itemFormat !== undefined && info.itemFormat !== "dcpjs") || (info.transforms?.length ?? 0) > 0)
    return undefined;
  return info;
}

/**
 * The storage entry of an item that references its base's bytes: the base's entry, naming the
 * checkpoint that holds the file (the base, or the checkpoint the base itself references: flat).
 *
 * @param base - the base.
 * @param info - the base's entry for the item ({@link baseEntryFor}).
 */
export function referenceTo(base: IncrementalBase, info: StorageInfo): StorageInfo {
  return { ...info, baseCheckpoint: info.baseCheckpoint ?? base.name };
}

/**
 * Why an item declared unchanged cannot reference the base, for the error.
 * @param base - the base.
 * @param item - the item.
 */
export function notInBase(base: IncrementalBase, item: WriteItem): CheckpointError {
  const what =
    item.type === "bytes"
      ? `the value "${item.index.fqn}"`
      : `"${item.index.fqn}" at [${item.tensorData.chunk.offsets.join(", ")}] as ${item.tensorData.properties.dtype} [${item.tensorData.chunk.sizes.join(", ")}]`;
  const entry = base.metadata.stateDictMetadata.get(item.index.fqn);
  const found =
    entry === undefined
      ? "no such entry"
      : entry.type === "bytes"
        ? "a value"
        : `${entry.properties.dtype} chunks ${entry.chunks.map((c) => `[${c.offsets.join(", ")}]+[${c.sizes.join(", ")}]`).join(", ")}`;
  return new CheckpointError(
    "INVALID_ARGUMENT",
    `Expected base ${base.name} to hold ${what}, declared unchanged, as raw dcpjs bytes it may reference, got ${found}`,
  );
}
