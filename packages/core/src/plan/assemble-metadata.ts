import { DTYPES } from "../model/dtype.js";
import type { ObjectPath } from "../model/state-dict.js";
import type { ChunkStorageMetadata, Metadata, StorageMetadataEntry } from "./metadata.js";
import { fqnShape, type SavePlanColumns } from "./save-plan-columns.js";

/** The DCP format version dcpjs writes into every `Metadata`. */
export const DCP_VERSION = "1.0.0";

/**
 * What the coordinator's global plan over columns found, by global fqn id: the input to
 * {@link assembleSaveMetadata}. Nothing in it is an object per item.
 */
export interface PlannedEntries {
  /** Every rank's plan, in rank order. */
  readonly columns: readonly SavePlanColumns[];
  /** The global fqn table: global id → fqn. */
  readonly fqns: readonly string[];
  /** Global fqn ids in the order their entries enter the metadata (first kept appearance). */
  readonly order: Int32Array;
  /** Per global fqn: 1 for a bytes value, 2 for a tensor. */
  readonly kinds: Int8Array;
  /** Per global fqn: the plan whose fqn table gives its dtype and global size. */
  readonly refPlans: Int32Array;
  /** Per global fqn: its id in that plan's fqn table. */
  readonly refFqns: Int32Array;
  /** Per global fqn, and one more: where its chunks start in `chunkPlans` / `chunkItems`. */
  readonly chunkStarts: Int32Array;
  /** Per chunk, in chunk-index order within each tensor: the plan that writes it. */
  readonly chunkPlans: Int32Array;
  /** Per chunk: its item's position in that plan. */
  readonly chunkItems: Int32Array;
}

/**
 * Builds the checkpoint's `Metadata` (no storage data yet) from the coordinator's global plan over
 * columns, as DCP's `create_default_global_save_plan` does from its items: one entry per fqn in
 * first-kept order, a tensor's chunks in their index-hint order. The one place the coordinator
 * turns columns into the `Metadata` it commits, so that a columnar `Metadata` builder can take
 * its place alone.
 *
 * @param entries - the global plan's entries.
 * @param plannerData - the flatten mappings, merged over every rank's local plan.
 */
export function assembleSaveMetadata(
  entries: PlannedEntries,
  plannerData: ReadonlyMap<string, ObjectPath>,
): Metadata {
  const { columns, fqns, order, kinds, refPlans, refFqns, chunkStarts, chunkPlans, chunkItems } = entries;
  const md = new Map<string, StorageMetadataEntry>();
  for (const g of order) {
    if (kinds[g] === 1) {
      md.set(fqns[g]!, { type: "bytes" });
      continue;
    }
    const ref = columns[refPlans[g]!]!;
    const f = refFqns[g]!;
    const nd = ref.shapeStarts[f + 1]! - ref.shapeStarts[f]!;
    const chunks: ChunkStorageMetadata[] = new Array(chunkStarts[g + 1]! - chunkStarts[g]!);
    for (let k = chunkStarts[g]!; k < chunkStarts[g + 1]!; k++) {
      const c = columns[chunkPlans[k]!]!;
      const b = c.boxStarts[chunkItems[k]!]!;
      const offsets = new Array<number>(nd);
      const sizes = new Array<number>(nd);
      for (let d = 0; d < nd; d++) {
        offsets[d] = c.boxes[b + d]!;
        sizes[d] = c.boxes[b + nd + d]!;
      }
      chunks[k - chunkStarts[g]!] = { offsets, sizes };
    }
    md.set(fqns[g]!, {
      type: "tensor",
      properties: { dtype: DTYPES[ref.dtypes[f]!]! },
      size: fqnShape(ref, f),
      chunks,
    });
  }
  return {
    version: DCP_VERSION,
    stateDictMetadata: md,
    plannerData: new Map(plannerData),
    storageData: new Map(),
    storageMeta: {},
  };
}
