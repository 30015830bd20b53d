import type { StateDict } from "../model/state-dict.js";
import type { Tensor } from "../model/tensor.js";
import type { LoadPlan, Metadata, ReadItem, SavePlan, StorageMeta, WriteItem } from "./metadata.js";
import type { SavePlanColumns } from "./save-plan-columns.js";

/**
 * Plans a save, as DCP's `SavePlanner`. Lifecycle on every rank: {@link SavePlanner.setUpPlanner}
 * → {@link SavePlanner.createLocalPlan}; on the coordinator {@link SavePlanner.createGlobalPlan};
 * on every rank {@link SavePlanner.finishPlan}, then {@link SavePlanner.resolveData} (or
 * {@link SavePlanner.resolveDataAt}) per item.
 */
export interface SavePlanner {
  /**
   * Receives the state dict to save.
   * @param stateDict - the nested state dict.
   * @param options - `isCoordinator`: whether this rank builds the global plan; `storageMeta` of the writer.
   */
  setUpPlanner(stateDict: StateDict, options: { isCoordinator: boolean; storageMeta?: StorageMeta }): void;
  /** What this rank holds and would write. */
  createLocalPlan(): SavePlan;
  /**
   * Merges every rank's local plan (coordinator only).
   * @param allPlans - one plan per rank, in rank order.
   * @returns one final plan per rank and the checkpoint's metadata (without storage data yet).
   */
  createGlobalPlan(allPlans: SavePlan[]): { plans: SavePlan[]; metadata: Metadata };
  /**
   * Adjusts the plan the coordinator sent back to this rank.
   * @param plan - this rank's plan from the global plan.
   */
  finishPlan(plan: SavePlan): SavePlan;
  /**
   * The bytes to store for an item: a view of tensor memory (no copy) or an encoded value.
   * Must be idempotent.
   * @param item - an item of the finished plan.
   */
  resolveData(item: WriteItem): Uint8Array;
  /**
   * Optional: {@link SavePlanner.resolveData} for item `item` of a finished plan over columns
   * (`savePlanColumns`), read by position, so that a writer needs no `WriteItem` object per item.
   * Must return what `resolveData` returns for that item. @default absent: the writer makes the
   * item (`writeItemAt`) and calls `resolveData`
   * @param columns - the finished plan's columns.
   * @param item - the item's position in them.
   */
  resolveDataAt?(columns: SavePlanColumns, item: number): Uint8Array;
  /**
   * What makes this planner's global plan a function of the ranks' local plans alone, as a string
   * (its kind and options): when present, a save whose every rank's local plan is unchanged since
   * the last save over the same process group with the same key reuses that save's global plan
   * and metadata skeleton, and `createGlobalPlan` is not called — as DCP's plan caching
   * (`enable_plan_caching`). @default absent: every save plans globally
   */
  planCacheKey?(): string | undefined;
}

/**
 * Plans a load, as DCP's `LoadPlanner`. Lifecycle: {@link LoadPlanner.setUpPlanner} →
 * {@link LoadPlanner.createLocalPlan}; coordinator {@link LoadPlanner.createGlobalPlan}; then
 * {@link LoadPlanner.finishPlan}, and while reading {@link LoadPlanner.loadBytes} or
 * {@link LoadPlanner.resolveTensor} / {@link LoadPlanner.commitTensor} per item.
 */
export interface LoadPlanner {
  /**
   * Receives the destination state dict and the checkpoint's metadata.
   * @param stateDict - the nested state dict to load into (in place).
   * @param metadata - the checkpoint's metadata.
   * @param isCoordinator - whether this rank builds the global plan.
   */
  setUpPlanner(stateDict: StateDict, metadata: Metadata, isCoordinator: boolean): void;
  /** The copies this rank needs. */
  createLocalPlan(): LoadPlan;
  /**
   * Merges every rank's local plan (coordinator only).
   * @param allPlans - one plan per rank.
   */
  createGlobalPlan(allPlans: LoadPlan[]): LoadPlan[];
  /**
   * Adjusts the plan the coordinator sent back to this rank.
   * @param plan - this rank's plan.
   */
  finishPlan(plan: LoadPlan): LoadPlan;
  /**
   * Receives a non-tensor value's stored bytes.
   * @param item - a `bytes` read item.
   * @param bytes - the value's encoded bytes (verified).
   */
  loadBytes(item: ReadItem, bytes: Uint8Array): void;
  /**
   * The local chunk a tensor item is copied into (the whole chunk; the item's `destOffsets` and
   * `lengths` say where inside it).
   * @param item - a `tensor` read item.
   */
  resolveTensor(item: ReadItem): Tensor;
  /**
   * Called once the item's box has been copied into the tensor from {@link LoadPlanner.resolveTensor}.
   * @param item - the read item.
   * @param tensor - the local chunk.
   */
  commitTensor(item: ReadItem, tensor: Tensor): void;
}
