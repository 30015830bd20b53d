import { type Metadata, metadataIndexKey } from "../plan/metadata.js";
import { createStorageReader } from "../storage/registry.js";

/** One entry of a checkpoint as {@link inspectCheckpoint} describes it (a row of `dcp inspect`). */
export interface InspectEntry {
  readonly fqn: string;
  readonly kind: "tensor" | "value";
  readonly dtype: string | null;
  readonly shape: number[] | null;
  /** DCP's chunks (saved boxes) of the tensor; 1 for a value. */
  readonly chunks: number;
  /** Stored bytes of its items. */
  readonly bytes: number;
}

/** The items of an incremental checkpoint that lie in another checkpoint's files (see `save`'s `base`). */
export interface InspectReference {
  /** The sibling checkpoint holding them (one path segment, e.g. `step-100`). */
  readonly checkpoint: string;
  /** Items (chunks and values) referenced there. */
  readonly items: number;
  /** Their stored bytes. */
  readonly bytes: number;
}

/** What {@link inspectCheckpoint} reports about a checkpoint. */
export interface InspectReport {
  readonly checkpointId: string;
  /** The on-disk format: `dcpjs`, `torch` or `safetensors`. */
  readonly format: string;
  readonly version: string;
  readonly entries: InspectEntry[];
  /**
   * The checkpoints whose files this one references, by name (an incremental checkpoint's base
   * and those the base references: flat, one level); empty for a self-contained checkpoint.
   */
  readonly references: InspectReference[];
  readonly totals: {
    readonly entries: number;
    readonly tensors: number;
    readonly values: number;
    /** Stored bytes of every entry, referenced ones included. */
    readonly bytes: number;
    /** The checkpoint's own data files (referenced files not counted). */
    readonly files: number;
  };
}

/** Options of {@link inspectCheckpoint}. */
export interface InspectOptions {
  /** Aborts the metadata read; throws `ABORTED`. */
  readonly signal?: AbortSignal;
}

/**
 * Describes a checkpoint from its metadata: every entry (fqn, dtype, global shape, chunk count,
 * stored bytes), the checkpoints it references (an incremental checkpoint's) and totals.
 *
 * @param metadata - the checkpoint's metadata.
 * @param checkpointId - its path or URI, for the report.
 */
export function describeCheckpoint(metadata: Metadata, checkpointId: string): InspectReport {
  const entries: InspectEntry[] = [];
  for (const [fqn, e] of metadata.stateDictMetadata) {
    const keys =
      e.type === "bytes"
        ? [metadataIndexKey({ fqn, offset: null })]
        : e.chunks.map((c) => metadataIndexKey({ fqn, offset: c.offsets }));
    const bytes = keys.reduce((n, k) => n + (metadata.storageData.get(k)?.length ?? 0), 0);
    entries.push(
      e.type === "bytes"
        ? { fqn, kind: "value", dtype: null, shape: null, chunks: 1, bytes }
        : {
            fqn,
            kind: "tensor",
            dtype: e.properties.dtype,
            shape: [...e.size],
            chunks: e.chunks.length,
            bytes,
          },
    );
  }
  const tensors = entries.filter((e) => e.kind === "tensor").length;
  const references = new Map<string, { items: number; bytes: number }>();
  const ownFiles = new Set<string>();
  for (const info of metadata.storageData.values()) {
    if (info.baseCheckpoint === undefined) {
      ownFiles.add(info.relativePath);
      continue;
    }
    const r = references.get(info.baseCheckpoint) ?? { items: 0, bytes: 0 };
    references.set(info.baseCheckpoint, { items: r.items + 1, bytes: r.bytes + info.length });
  }
  return {
    checkpointId,
    format: metadata.storageMeta.format ?? "dcpjs",
    version: metadata.version,
    entries,
    references: [...references]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([checkpoint, r]) => ({ checkpoint, ...r })),
    totals: {
      entries: entries.length,
      tensors,
      values: entries.length - tensors,
      bytes: entries.reduce((n, e) => n + e.bytes, 0),
      files: ownFiles.size,
    },
  };
}

/**
 * Reads a checkpoint's metadata (one read) and describes it; see {@link describeCheckpoint}.
 *
 * @param checkpointId - a folder or a URI of any registered backend, in any format dcpjs reads.
 * @param options - see {@link InspectOptions}.
 * @throws {@link CheckpointError} `INCOMPLETE_CHECKPOINT` when there is no metadata, a
 * {@link MetadataError} when it is malformed, `ABORTED`.
 */
export async function inspectCheckpoint(
  checkpointId: string,
  options: InspectOptions = {},
): Promise<InspectReport> {
  const reader = await createStorageReader(checkpointId);
  return describeCheckpoint(await reader.readMetadata(options.signal), checkpointId);
}
