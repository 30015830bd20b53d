import { CheckpointError } from "../errors.js";
import { castRefusal } from "../model/cast.js";
import type { DType } from "../model/dtype.js";
import { BoxIndex, boxIntersection, findChunk, sameShape } from "../model/geometry.js";
import {
  flattenStateDict,
  type ObjectPath,
  type StateDict,
  setElement,
  unflattenStateDict,
} from "../model/state-dict.js";
import { emptyTensor, isShardedTensor, isTensor, type ShardedTensor, type Tensor } from "../model/tensor.js";
import { decodeValue } from "../model/value-codec.js";
import type {
  ChunkStorageMetadata,
  LoadPlan,
  Metadata,
  ReadItem,
  StorageMetadataEntry,
  TensorReadItem,
  TensorStorageMetadata,
} from "./metadata.js";
import { chunkAt, chunkCount, chunkIndexOf, metadataColumns } from "./metadata-columns.js";
import type { LoadPlanner } from "./planner.js";

/** Below this many saved chunks a tensor's chunks are scanned; above, found by a {@link BoxIndex}. */
const INDEX_MIN_CHUNKS = 16;

/** Each saved tensor's chunk index, built on first use and kept while its chunk list lives. */
const chunkIndexes = new WeakMap<readonly ChunkStorageMetadata[], BoxIndex>();

/**
 * The index of a tensor's saved chunks: built once per chunk list (rebuilt when chunks were added).
 */
function chunkIndex(md: TensorStorageMetadata): BoxIndex {
  let index = chunkIndexes.get(md.chunks);
  if (index === undefined || index.size !== md.chunks.length) {
    index = new BoxIndex(md.chunks, md.size.length);
    chunkIndexes.set(md.chunks, index);
  }
  return index;
}

/**
 * The read items that fill `localChunks` of `fqn` from the checkpoint's chunks, as DCP's
 * `create_read_items_for_chunk_list`: for every pair of overlapping (local, saved) chunks, one
 * item copying their intersection; offsets are relative to each chunk. The saved chunks a local
 * chunk meets are found by an index of the tensor's chunks (built once per tensor, kept with its
 * metadata), not by testing each of them (as DCP 2.13's sweep).
 *
 * @param fqn - the entry.
 * @param checkpointMd - what the checkpoint holds for it.
 * @param localChunks - what this rank holds, in order (their position is the dest hint).
 * @returns the items, local chunk by local chunk, saved chunk by saved chunk.
 */
export function createReadItemsForChunkList(
  fqn: string,
  checkpointMd: TensorStorageMetadata,
  localChunks: readonly ChunkStorageMetadata[],
): TensorReadItem[] {
  const items: TensorReadItem[] = [];
  const saved = checkpointMd.chunks;
  const index = saved.length >= INDEX_MIN_CHUNKS ? chunkIndex(checkpointMd) : undefined;
  pushReadItems(fqn, localChunks, saved.length, (k) => saved[k]!, index, items);
  return items;
}

/**
 * The items of {@link createReadItemsForChunkList}, whatever holds the saved chunks: for each local
 * chunk, the saved chunks the index finds (or every one, without an index) that it meets.
 *
 * @param fqn - the entry.
 * @param local - what this rank holds, in order (their position is the dest hint).
 * @param count - how many chunks were saved.
 * @param savedAt - saved chunk k (made on demand from columns, or the metadata's own object).
 * @param index - the saved chunks' index, or undefined to test each.
 * @param items - where the items go.
 */
function pushReadItems(
  fqn: string,
  local: readonly ChunkStorageMetadata[],
  count: number,
  savedAt: (k: number) => ChunkStorageMetadata,
  index: BoxIndex | undefined,
  items: ReadItem[],
): void {
  for (let idx = 0; idx < local.length; idx++) {
    const shard = local[idx]!;
    const destOffset = [...shard.offsets]; // the caller's shard may change; the metadata's chunks do not
    const push = (k: number) => {
      const chunk = savedAt(k);
      const meet = boxIntersection(shard, chunk);
      if (!meet) return;
      const { storageOffsets, destOffsets, lengths } = meet;
      items.push({
        type: "tensor",
        destIndex: { fqn, offset: destOffset, index: idx },
        destOffsets,
        storageIndex: { fqn, offset: chunk.offsets, index: k },
        storageOffsets,
        lengths,
      });
    };
    if (index) for (const k of index.overlapping(shard)) push(k);
    else for (let k = 0; k < count; k++) push(k);
  }
}

function describeLeaf(obj: unknown): string {
  if (isTensor(obj)) return `a ${obj.dtype} tensor of shape [${obj.shape.join(", ")}]`;
  if (isShardedTensor(obj)) return `a ${obj.dtype} sharded tensor of shape [${obj.shape.join(", ")}]`;
  return `a value (${obj === null ? "null" : typeof obj})`;
}

/**
 * The read items for one flattened state-dict entry, as DCP's `create_default_local_load_plan`.
 *
 * A destination tensor of another dtype than the saved one is loaded with a cast (as DCP, whose
 * reader ends in `target.copy_(saved)`), unless `strictDtype`.
 *
 * @param fqn - the entry.
 * @param obj - the destination leaf.
 * @param md - what the checkpoint holds for it.
 * @param strictDtype - refuse a destination of another dtype instead of casting. @default false
 * @throws {@link CheckpointError} `SIZE_MISMATCH` when the global shapes differ (DCP's
 * "Size mismatch between saved … and current: … for …"); `DTYPE_MISMATCH` when the dtypes differ
 * and `strictDtype` is set, or the saved dtype cannot be cast to the destination's (complex to
 * real); `INVALID_STATE_DICT` when a tensor meets a value or the reverse.
 */
export function createReadItems(
  fqn: string,
  obj: unknown,
  md: StorageMetadataEntry,
  strictDtype = false,
): ReadItem[] {
  const isTensorLike = isTensor(obj) || isShardedTensor(obj);
  if (md.type === "bytes") {
    if (isTensorLike) {
      throw new CheckpointError(
        "INVALID_STATE_DICT",
        `Expected "${fqn}" to be a non-tensor value as saved, found ${describeLeaf(obj)}`,
      );
    }
    const index = { fqn, offset: null };
    return [{ type: "bytes", destIndex: index, storageIndex: index }];
  }
  if (!isTensorLike) {
    throw new CheckpointError(
      "INVALID_STATE_DICT",
      `Expected "${fqn}" to be a ${md.properties.dtype} tensor of shape [${md.size.join(", ")}] as saved, found ${describeLeaf(obj)}`,
    );
  }
  return createReadItemsForChunkList(
    fqn,
    md,
    localChunks(fqn, obj as Tensor | ShardedTensor, md, strictDtype),
  );
}

/**
 * The chunks a destination tensor holds, checked against what the checkpoint saved for it.
 * @throws {@link CheckpointError} as {@link createReadItems}.
 */
function localChunks(
  fqn: string,
  t: Tensor | ShardedTensor,
  md: TensorStorageMetadata,
  strictDtype: boolean,
): ChunkStorageMetadata[] {
  if (!sameShape(t.shape, md.size)) {
    throw new CheckpointError(
      "SIZE_MISMATCH",
      `Size mismatch between saved [${md.size.join(", ")}] and current: [${t.shape.join(", ")}] for ${fqn}`,
    );
  }
  if (t.dtype !== md.properties.dtype) {
    const refusal = strictDtype ? "strictDtype is set" : castRefusal(md.properties.dtype, t.dtype);
    if (refusal !== undefined)
      throw new CheckpointError(
        "DTYPE_MISMATCH",
        `Dtype mismatch between saved ${md.properties.dtype} and current: ${t.dtype} for ${fqn} (${refusal})`,
      );
  }
  return isShardedTensor(t)
    ? t.shards.map((s) => ({ offsets: s.offsets, sizes: s.tensor.shape }))
    : [{ offsets: t.shape.map(() => 0), sizes: t.shape }];
}

/**
 * {@link createReadItemsForChunkList} for a tensor of a columnar metadata: the saved chunks a
 * local chunk meets are found by the index of its entry's chunk columns (built on first use, kept
 * with the metadata) and only those are made into boxes — the same items, in the same order.
 *
 * @param metadata - a columnar metadata.
 * @param e - the tensor's entry.
 * @param fqn - its fqn.
 * @param local - what this rank holds, in order.
 * @param items - where the items go.
 */
function pushColumnReadItems(
  metadata: Metadata,
  e: number,
  fqn: string,
  local: readonly ChunkStorageMetadata[],
  items: ReadItem[],
): void {
  const c = metadataColumns(metadata)!;
  const count = chunkCount(c, e);
  const index = count >= INDEX_MIN_CHUNKS ? chunkIndexOf(metadata, e) : undefined;
  pushReadItems(fqn, local, count, (k) => chunkAt(c, e, k), index, items);
}

/** Options of {@link DefaultLoadPlanner}. */
export interface DefaultLoadPlannerOptions {
  /**
   * Skip state-dict keys the checkpoint does not have instead of failing (DCP's
   * `allow_partial_load`). @default false
   */
  readonly allowPartialLoad?: boolean;
  /**
   * Refuse (`DTYPE_MISMATCH`) a destination tensor whose dtype differs from the saved one, instead
   * of loading it cast with torch's `copy_` semantics (as DCP does; see docs/format.md, "Cast on
   * load"). @default false
   */
  readonly strictDtype?: boolean;
}

/**
 * DCP's `DefaultLoadPlanner`: flattens the destination state dict, plans the copies from the
 * checkpoint's chunks into each local tensor or shard (resharding), and loads in place — tensor
 * data is overwritten, values are replaced in the nested state dict.
 */
export class DefaultLoadPlanner implements LoadPlanner {
  readonly #options: DefaultLoadPlannerOptions;
  /** The nested state dict being loaded into. */
  protected stateDict: StateDict = {};
  /** The checkpoint's metadata. */
  protected metadata: Metadata | undefined;
  #flat = new Map<string, unknown>();
  #mappings = new Map<string, ObjectPath>();

  /** @param options - see {@link DefaultLoadPlannerOptions}. */
  constructor(options: DefaultLoadPlannerOptions = {}) {
    this.#options = options;
  }

  /** @inheritDoc */
  setUpPlanner(stateDict: StateDict, metadata: Metadata, _isCoordinator: boolean): void {
    this.stateDict = stateDict;
    this.metadata = metadata;
    const { flat, mappings } = flattenStateDict(stateDict);
    this.#flat = flat;
    this.#mappings = mappings;
  }

  /**
   * @inheritDoc
   * @throws {@link CheckpointError} `MISSING_KEY` ("Missing key in checkpoint state_dict: …")
   * when a key is absent and partial loads are not allowed; `UNSUPPORTED_DTYPE` naming the fqn and
   * the stored dtype when a key asks for a tensor dcpjs cannot hold (even with partial loads); see {@link createReadItems} for the rest.
   */
  createLocalPlan(): LoadPlan {
    const md = this.metadata!;
    const columns = metadataColumns(md);
    const items: ReadItem[] = [];
    for (const [fqn, obj] of this.#flat) {
      const entry = md.stateDictMetadata.get(fqn);
      if (!entry) {
        assertHeld(md, fqn);
        if (this.#options.allowPartialLoad) continue;
        throw new CheckpointError("MISSING_KEY", `Missing key in checkpoint state_dict: ${fqn}.`);
      }
      const e = columns?.entryOf.get(fqn);
      if (e !== undefined && entry.type === "tensor" && (isTensor(obj) || isShardedTensor(obj))) {
        // Columnar metadata: the chunks are read from the columns, never built as a list.
        const local = localChunks(fqn, obj, entry, this.#options.strictDtype ?? false);
        pushColumnReadItems(md, e, fqn, local, items);
        continue;
      }
      for (const item of createReadItems(fqn, obj, entry, this.#options.strictDtype)) items.push(item);
    }
    return { items };
  }

  /** @inheritDoc */
  createGlobalPlan(allPlans: LoadPlan[]): LoadPlan[] {
    return allPlans;
  }

  /** @inheritDoc */
  finishPlan(plan: LoadPlan): LoadPlan {
    return plan;
  }

  /** @inheritDoc */
  loadBytes(item: ReadItem, bytes: Uint8Array): void {
    const { fqn } = item.destIndex;
    const value = decodeValue(bytes, fqn);
    this.#flat.set(fqn, value);
    setElement(this.stateDict, this.#mappings.get(fqn) ?? [fqn], value);
  }

  /**
   * @inheritDoc
   * @throws {@link CheckpointError} `INVALID_STATE_DICT` when the destination changed since planning.
   */
  resolveTensor(item: ReadItem): Tensor {
    const { fqn } = item.destIndex;
    const obj = this.#flat.get(fqn);
    if (isTensor(obj)) return obj;
    if (isShardedTensor(obj)) {
      const shard = findChunk(obj.shards, item.destIndex.offset ?? [], item.destIndex.index);
      if (shard) return shard.tensor;
    }
    throw new CheckpointError(
      "INVALID_STATE_DICT",
      `Expected the destination of "${fqn}" at [${item.destIndex.offset?.join(", ")}] to exist while loading`,
    );
  }

  /** @inheritDoc */
  commitTensor(_item: ReadItem, _tensor: Tensor): void {}
}

/**
 * Fails a load that asks for `fqn` when the checkpoint saved it in a dtype dcpjs cannot hold
 * ({@link Metadata.unsupportedDtypes}); loads that do not ask for it are unaffected, as in DCP.
 *
 * @param md - the checkpoint's metadata.
 * @param fqn - the key asked for.
 * @throws {@link CheckpointError} `UNSUPPORTED_DTYPE` naming the fqn and the stored dtype.
 */
function assertHeld(md: Metadata, fqn: string): void {
  const stored = md.unsupportedDtypes?.get(fqn);
  if (stored !== undefined)
    throw new CheckpointError(
      "UNSUPPORTED_DTYPE",
      `Expected "${fqn}" to be saved in a dtype dcpjs can hold, got ${stored} (load the other keys with loadStateDictFromKeys({ keys }) or a state dict without it)`,
    );
}

/**
 * Whether `fqn` is selected by `keys`: equal to a key, or below it (`key.` prefix).
 */
function selected(fqn: string, keys: readonly string[] | undefined): boolean {
  return keys === undefined || keys.some((k) => fqn === k || fqn.startsWith(`${k}.`));
}

/**
 * A load planner that builds the state dict from the checkpoint's own metadata, as DCP's
 * `_EmptyStateDictLoadPlanner`: a zeroed tensor of the saved dtype and global shape per tensor, the
 * saved value per non-tensor entry, nested as saved. Read the result from
 * {@link EmptyStateDictLoadPlanner.stateDict} after the load.
 */
export class EmptyStateDictLoadPlanner extends DefaultLoadPlanner {
  readonly #keys: readonly string[] | undefined;

  /**
   * @param keys - load only these fqns and what lies below them (`"model"` selects
   * `"model.w"`); all when omitted. The load fails with `UNSUPPORTED_DTYPE` when they select a
   * tensor saved in a dtype dcpjs cannot hold ({@link Metadata.unsupportedDtypes}).
   */
  constructor(keys?: readonly string[]) {
    super({ allowPartialLoad: false });
    this.#keys = keys;
  }

  /** The state dict built and filled by the load. */
  get result(): StateDict {
    return this.stateDict;
  }

  /** @inheritDoc */
  override setUpPlanner(_stateDict: StateDict, metadata: Metadata, isCoordinator: boolean): void {
    const flat = new Map<string, unknown>();
    for (const fqn of metadata.unsupportedDtypes?.keys() ?? [])
      if (selected(fqn, this.#keys)) assertHeld(metadata, fqn);
    for (const [fqn, entry] of metadata.stateDictMetadata) {
      if (!selected(fqn, this.#keys)) continue;
      flat.set(fqn, entry.type === "tensor" ? allocated(fqn, entry.properties.dtype, entry.size) : null);
    }
    const built = unflattenStateDict(flat, metadata.plannerData);
    super.setUpPlanner(built, metadata, isCoordinator);
  }
}

/**
 * A zeroed tensor for `fqn` as the checkpoint declares it.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` naming the fqn when it cannot be allocated
 * (more bytes than one buffer holds, or than memory has), instead of a bare `RangeError`.
 */
function allocated(fqn: string, dtype: DType, size: readonly number[]): Tensor {
  try {
    return emptyTensor(dtype, size);
  } catch (cause) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected "${fqn}" (${dtype} [${size.join(", ")}]) to fit in memory, but allocating it failed (${String(cause)})`,
      { cause },
    );
  }
}
