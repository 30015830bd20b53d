import { DTYPES } from "../model/dtype.js";
import type { ObjectPath } from "../model/state-dict.js";
import type { Metadata } from "./metadata.js";
import { MetadataBuilder } from "./metadata-builder.js";
import type { SavePlanColumns } from "./save-plan-columns.js";

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
 * first-kept order, a tensor's chunks in their index-hint order. The result is columnar (a
 * {@link MetadataBuilder}'s, filled straight from the plans' box pools): no object per chunk.
 *
 * @param entries - the global plan's entries.
 * @param plannerData - the flatten mappings, merged over every rank's local plan.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when a tensor has more than 254 dimensions.
 */
export function assembleSaveMetadata(
  entries: PlannedEntries,
  plannerData: ReadonlyMap<string, ObjectPath>,
): Metadata {
  const { columns, fqns, order, kinds, refPlans, refFqns, chunkStarts, chunkPlans, chunkItems } = entries;
  const builder = new MetadataBuilder({ version: DCP_VERSION, storageMeta: {} });
  let dims = 0;
  for (const g of order)
    if (kinds[g] === 2) {
      const ref = columns[refPlans[g]!]!;
      const f = refFqns[g]!;
      dims += (chunkStarts[g + 1]! - chunkStarts[g]!) * (ref.shapeStarts[f + 1]! - ref.shapeStarts[f]!);
    }
  builder.reserve(chunkStarts[chunkStarts.length - 1]! + order.length, dims);
  for (const g of order) {
    if (kinds[g] === 1) {
      builder.addValue(fqns[g]!);
      continue;
    }
    const ref = columns[refPlans[g]!]!;
    const f = refFqns[g]!;
    const nd = ref.shapeStarts[f + 1]! - ref.shapeStarts[f]!;
    const entry = builder.addTensor(
      fqns[g]!,
      DTYPES[ref.dtypes[f]!]!,
      ref.shapes.subarray(ref.shapeStarts[f]!, ref.shapeStarts[f + 1]!),
    );
    for (let k = chunkStarts[g]!; k < chunkStarts[g + 1]!; k++) {
      const c = columns[chunkPlans[k]!]!;
      const b = c.boxStarts[chunkItems[k]!]!;
      builder.addChunk(entry, c.boxes, c.boxes, b, b + nd);
    }
  }
  for (const [fqn, path] of plannerData) builder.setPath(fqn, path);
  return builder.build();
}
