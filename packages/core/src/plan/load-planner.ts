import { CheckpointError } from "../errors.js";
import { castRefusal } from "../model/cast.js";
import type { DType } from "../model/dtype.js";
import { BoxIndex, findChunk, sameShape } from "../model/geometry.js";
import {
  flattenLoadTargets,
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
  MetadataIndex,
  ReadItem,
  StorageMetadataEntry,
  TensorReadItem,
  TensorStorageMetadata,
} from "./metadata.js";
import {
  chunkCount,
  chunkIndexOf,
  entrySizeOf,
  type MetadataColumns,
  metadataColumns,
  VALUE_DTYPE,
} from "./metadata-columns.js";
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
 * The items share what is equal between them (read-only): the local chunk's index and offsets
 * among its items, one frozen array of zeros per rank for every zero offset, and one index for
 * the destination and the source when they name the same box (a whole tensor saved whole).
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
  pushReadItems(fqn, localChunks, new ListChunks(saved), saved.length, index, items);
  return items;
}

/** One frozen array of `ndim` zeros per rank, shared by every zero offset of the items. */
const zeroArrays: (readonly number[])[] = [];

/** The shared zeros of rank `ndim`. */
function zerosOf(ndim: number): readonly number[] {
  let zeros = zeroArrays[ndim];
  if (zeros === undefined) {
    zeros = Object.freeze(new Array<number>(ndim).fill(0));
    zeroArrays[ndim] = zeros;
  }
  return zeros;
}

/** Whether every number of `offsets` is 0. */
function allZero(offsets: readonly number[]): boolean {
  for (let d = 0; d < offsets.length; d++) if (offsets[d] !== 0) return false;
  return true;
}

/** A tensor's saved chunks as {@link pushReadItems} reads them, from the metadata's objects or its columns. */
interface SavedChunks {
  /** Chunk `k`'s offset along dimension `d` (elements). */
  offset(k: number, d: number): number;
  /** Chunk `k`'s size along dimension `d` (elements). */
  size(k: number, d: number): number;
  /** Chunk `k`'s offsets as its read items' storage index holds them. */
  offsets(k: number): readonly number[];
}

/** {@link SavedChunks} of a chunk list (a metadata built from maps): its own offset arrays. */
class ListChunks implements SavedChunks {
  readonly #list: readonly ChunkStorageMetadata[];
  constructor(list: readonly ChunkStorageMetadata[]) {
    this.#list = list;
  }
  offset(k: number, d: number): number {
    return this.#list[k]!.offsets[d]!;
  }
  size(k: number, d: number): number {
    return this.#list[k]!.sizes[d]!;
  }
  offsets(k: number): readonly number[] {
    return this.#list[k]!.offsets;
  }
}

/**
 * {@link SavedChunks} of one entry of a columnar metadata, read from its chunk columns (nothing
 * built per chunk but the offsets of an item's storage index, shared zeros when they are zero).
 * One per plan, moved from entry to entry with {@link ColumnChunks.at}.
 */
class ColumnChunks implements SavedChunks {
  readonly #offsets: Float64Array;
  readonly #sizes: Float64Array;
  readonly #c: MetadataColumns;
  #first = 0;
  #ndim = 0;
  constructor(c: MetadataColumns) {
    this.#c = c;
    this.#offsets = c.chunkOffsets;
    this.#sizes = c.chunkSizes;
  }
  /** Points at entry `e`'s chunks. */
  at(e: number): this {
    this.#first = this.#c.entryChunkDim[e]!;
    this.#ndim = this.#c.entryNdim[e]!;
    return this;
  }
  offset(k: number, d: number): number {
    return this.#offsets[this.#first + k * this.#ndim + d]!;
  }
  size(k: number, d: number): number {
    return this.#sizes[this.#first + k * this.#ndim + d]!;
  }
  offsets(k: number): readonly number[] {
    const ndim = this.#ndim;
    const at = this.#first + k * ndim;
    let zero = true;
    for (let d = 0; d < ndim && zero; d++) zero = this.#offsets[at + d] === 0;
    if (zero) return zerosOf(ndim);
    const out = new Array<number>(ndim);
    for (let d = 0; d < ndim; d++) out[d] = this.#offsets[at + d]!;
    return out;
  }
}

/**
 * The items of {@link createReadItemsForChunkList}, whatever holds the saved chunks: for each local
 * chunk, the saved chunks the index finds (or every one, without an index) that it meets.
 *
 * @param fqn - the entry.
 * @param local - what this rank holds, in order (their position is the dest hint).
 * @param saved - the saved chunks.
 * @param count - how many chunks were saved.
 * @param index - the saved chunks' index, or undefined to test each.
 * @param items - where the items go.
 */
function pushReadItems(
  fqn: string,
  local: readonly ChunkStorageMetadata[],
  saved: SavedChunks,
  count: number,
  index: BoxIndex | undefined,
  items: ReadItem[],
): void {
  for (let idx = 0; idx < local.length; idx++) {
    const shard = local[idx]!;
    // The caller's shard may change; the metadata's chunks do not.
    const destOffset = allZero(shard.offsets) ? zerosOf(shard.offsets.length) : [...shard.offsets];
    const destIndex: MetadataIndex = { fqn, offset: destOffset, index: idx };
    if (index) for (const k of index.overlapping(shard)) pushReadItem(fqn, shard, destIndex, saved, k, items);
    else for (let k = 0; k < count; k++) pushReadItem(fqn, shard, destIndex, saved, k, items);
  }
}

/**
 * The item copying where local chunk `shard` meets saved chunk `k`, as DCP's
 * `create_read_items_for_chunk_list` (its offsets relative to each chunk); none when they do not
 * overlap (as `boxesOverlap`).
 */
function pushReadItem(
  fqn: string,
  shard: ChunkStorageMetadata,
  destIndex: MetadataIndex,
  saved: SavedChunks,
  k: number,
  items: ReadItem[],
): void {
  const ndim = shard.offsets.length;
  let storageZero = true;
  let destZero = true;
  for (let d = 0; d < ndim; d++) {
    const so = saved.offset(k, d);
    const lo = shard.offsets[d]!;
    if (lo >= so + saved.size(k, d) || so >= lo + shard.sizes[d]!) return;
    if (lo > so) storageZero = false;
    if (so > lo) destZero = false;
  }
  const zeros = zerosOf(ndim);
  const lengths = new Array<number>(ndim);
  const storageOffsets = storageZero ? zeros : new Array<number>(ndim);
  const destOffsets = destZero ? zeros : new Array<number>(ndim);
  for (let d = 0; d < ndim; d++) {
    const so = saved.offset(k, d);
    const lo = shard.offsets[d]!;
    lengths[d] = Math.min(so + saved.size(k, d), lo + shard.sizes[d]!) - Math.max(lo, so);
    if (!storageZero) (storageOffsets as number[])[d] = Math.max(lo - so, 0);
    if (!destZero) (destOffsets as number[])[d] = Math.max(so - lo, 0);
  }
  const offset = saved.offsets(k);
  const storageIndex: MetadataIndex =
    destIndex.index === k && destIndex.offset === offset ? destIndex : { fqn, offset, index: k };
  items.push({ type: "tensor", destIndex, destOffsets, storageIndex, storageOffsets, lengths });
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
  const t = obj as Tensor | ShardedTensor;
  assertTarget(fqn, t, md.properties.dtype, sameShape(t.shape, md.size) ? undefined : md.size, strictDtype);
  return createReadItemsForChunkList(fqn, md, localChunks(t));
}

/**
 * Checks a destination tensor against what the checkpoint saved for it.
 *
 * @param fqn - the entry.
 * @param t - the destination.
 * @param dtype - the saved dtype.
 * @param otherSize - the saved global size when it differs from `t`'s, else undefined.
 * @param strictDtype - refuse another dtype instead of casting.
 * @throws {@link CheckpointError} as {@link createReadItems}.
 */
function assertTarget(
  fqn: string,
  t: Tensor | ShardedTensor,
  dtype: DType,
  otherSize: readonly number[] | undefined,
  strictDtype: boolean,
): void {
  if (otherSize !== undefined) {
    throw new CheckpointError(
      "SIZE_MISMATCH",
      `Size mismatch between saved [${otherSize.join(", ")}] and current: [${t.shape.join(", ")}] for ${fqn}`,
    );
  }
  if (t.dtype !== dtype) {
    const refusal = strictDtype ? "strictDtype is set" : castRefusal(dtype, t.dtype);
    if (refusal !== undefined)
      throw new CheckpointError(
        "DTYPE_MISMATCH",
        `Dtype mismatch between saved ${dtype} and current: ${t.dtype} for ${fqn} (${refusal})`,
      );
  }
}

/** The chunks a destination tensor holds: its shards', or its own whole box. */
function localChunks(t: Tensor | ShardedTensor): ChunkStorageMetadata[] {
  return isShardedTensor(t)
    ? t.shards.map((s) => ({ offsets: s.offsets, sizes: s.tensor.shape }))
    : [{ offsets: zerosOf(t.shape.length), sizes: t.shape }];
}

/** Whether entry `e` of columns `c` has the global size `shape`. */
function sameEntrySize(c: MetadataColumns, e: number, shape: readonly number[]): boolean {
  const at = c.entrySizeStart[e]!;
  if (c.entrySizeStart[e + 1]! - at !== shape.length) return false;
  for (let d = 0; d < shape.length; d++) if (c.entrySize[at + d] !== shape[d]) return false;
  return true;
}

/**
 * {@link createReadItemsForChunkList} for a tensor of a columnar metadata: the saved chunks a
 * local chunk meets are found by the index of its entry's chunk columns (built on first use, kept
 * with the metadata) and read from the columns — the same items, in the same order.
 *
 * @param metadata - a columnar metadata.
 * @param chunks - the plan's reader of its chunk columns.
 * @param e - the tensor's entry.
 * @param fqn - its fqn.
 * @param local - what this rank holds, in order.
 * @param items - where the items go.
 */
function pushColumnReadItems(
  metadata: Metadata,
  chunks: ColumnChunks,
  e: number,
  fqn: string,
  local: readonly ChunkStorageMetadata[],
  items: ReadItem[],
): void {
  const count = chunkCount(metadataColumns(metadata)!, e);
  const index = count >= INDEX_MIN_CHUNKS ? chunkIndexOf(metadata, e) : undefined;
  pushReadItems(fqn, local, chunks.at(e), count, index, items);
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
  /** The path of each value in the state dict (tensors are loaded in place, not set). */
  #valuePaths = new Map<string, ObjectPath>();

  /** @param options - see {@link DefaultLoadPlannerOptions}. */
  constructor(options: DefaultLoadPlannerOptions = {}) {
    this.#options = options;
  }

  /** @inheritDoc */
  setUpPlanner(stateDict: StateDict, metadata: Metadata, _isCoordinator: boolean): void {
    this.stateDict = stateDict;
    this.metadata = metadata;
    const { flat, valuePaths } = flattenLoadTargets(stateDict);
    this.#flat = flat;
    this.#valuePaths = valuePaths;
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
    const chunks = columns && new ColumnChunks(columns);
    const strictDtype = this.#options.strictDtype ?? false;
    const items: ReadItem[] = [];
    for (const [fqn, obj] of this.#flat) {
      const e = columns?.entryOf.get(fqn);
      if (
        e !== undefined &&
        columns!.entryDtype[e] !== VALUE_DTYPE &&
        (isTensor(obj) || isShardedTensor(obj))
      ) {
        // Columnar metadata: the entry is read from the columns, never built as an object.
        const c = columns!;
        const otherSize = sameEntrySize(c, e, obj.shape) ? undefined : entrySizeOf(c, e);
        assertTarget(fqn, obj, c.dtypes[c.entryDtype[e]!]!, otherSize, strictDtype);
        pushColumnReadItems(md, chunks!, e, fqn, localChunks(obj), items);
        continue;
      }
      const entry = md.stateDictMetadata.get(fqn);
      if (!entry) {
        assertHeld(md, fqn);
        if (this.#options.allowPartialLoad) continue;
        throw new CheckpointError("MISSING_KEY", `Missing key in checkpoint state_dict: ${fqn}.`);
      }
      for (const item of createReadItems(fqn, obj, entry, strictDtype)) items.push(item);
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
    setElement(this.stateDict, this.#valuePaths.get(fqn) ?? [fqn], value);
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
    const c = metadataColumns(metadata);
    if (c)
      // Columnar metadata: each entry's dtype and size from the columns, no entry object built.
      for (let e = 0; e < c.fqns.length; e++) {
        const fqn = c.fqns[e]!;
        if (!selected(fqn, this.#keys)) continue;
        const d = c.entryDtype[e]!;
        flat.set(fqn, d === VALUE_DTYPE ? null : allocated(fqn, c.dtypes[d]!, entrySizeOf(c, e)));
      }
    else
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
