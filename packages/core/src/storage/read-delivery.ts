// The reader's last stage: where a stored item may land in place, and handing verified payloads
// to the planner — values decoded, tensor boxes copied or cast, on worker threads where both sides
// lie in shared memory.
import { castOnWorker, copyOnWorker, runsOffThread } from "#platform";
import { assertCastable, boxCast, castBox } from "../model/cast.js";
import { DTYPE_BYTES } from "../model/dtype.js";
import { boxCopy, contiguousRun, numel } from "../model/geometry.js";
import { stridedCopy } from "../model/strided-copy.js";
import { type Tensor, tensorBytes } from "../model/tensor.js";
import type { ReadItem } from "../plan/metadata.js";
import type { LoadPlanner } from "../plan/planner.js";
import { type ItemRead, readsWholeBox, type SavedChunk } from "./read-locate.js";

/** Where a stored item read by one item lands in place: the destination tensor and the bytes of it. */
export interface DirectTarget {
  /** The destination's bytes the stored item (or its payload) fills. */
  readonly bytes: Uint8Array;
  /** The destination tensor. */
  readonly dest: Tensor;
  /** The stored item is framed around these bytes (`ItemFormat.payloadFrame`): read its frame first. */
  readonly framed?: true;
}

/**
 * The destination bytes when a stored item is read by one item, whole, into a contiguous run of
 * its destination of the saved dtype — for a `zeroCopy` format; for a framed one where the
 * payload is at least the format's `payloadFrame.minBytes` (its frame is read before its payload).
 * @param group - the read items of one stored item.
 * @param planner - resolves the destination tensor.
 */
export function directTarget(group: readonly ItemRead[], planner: LoadPlanner): DirectTarget | undefined {
  const read = group[0]!;
  const { item, format, dtype, start, end } = read;
  if (group.length !== 1 || item.type !== "tensor" || dtype === undefined) return undefined;
  if (read.blocked && end - start < read.info.length) return undefined; // part: whole blocks
  if (!readsWholeBox(read)) return undefined; // only part of the chunk
  // The box is the chunk whole: its lengths are the chunk's sizes.
  const payload = numel(item.lengths) * DTYPE_BYTES[dtype];
  // A framed item whose payload may be the tensor's bytes as they are: its frame is read first.
  const framed =
    !format.zeroCopy && format.payloadFrame !== undefined && payload >= format.payloadFrame.minBytes;
  if (!format.zeroCopy && !framed) return undefined; // framed: unframed first
  const dest = planner.resolveTensor(item);
  if (dest.dtype !== dtype) return undefined; // cast on delivery
  const run = contiguousRun(dest.shape, item.destOffsets, item.lengths);
  if (!run) return undefined;
  const elementBytes = DTYPE_BYTES[dest.dtype];
  const { data } = dest;
  // One view of the destination's bytes per item (the common case, its whole tensor: no subarray).
  const bytes =
    run.start === 0 && run.count * elementBytes === data.byteLength
      ? tensorBytes(dest)
      : new Uint8Array(data.buffer, data.byteOffset + run.start * elementBytes, run.count * elementBytes);
  return framed ? { bytes, dest, framed: true } : { bytes, dest };
}

/**
 * Hands one stored item's verified payload to the planner, for each read item it serves: values
 * decoded (`loadBytes`), tensor boxes copied or cast into their destination (unless read in place
 * into `dest`) — on a worker thread where both sides lie in shared memory and the box is at least
 * `workerMinBytes`.
 * @param group - the read items served by the payload.
 * @param bytes - the payload (from byte `start` of the stored item, for a partial read).
 * @param dest - the tensor it was read into in place, if it was.
 * @param planner - receives the items.
 * @param workerMinBytes - the smallest copy or cast run on a worker thread.
 * @returns a promise while copies run on workers; undefined when all is done.
 */
export function deliverPayload(
  group: readonly ItemRead[],
  bytes: Uint8Array,
  dest: Tensor | undefined,
  planner: LoadPlanner,
  workerMinBytes: number,
): Promise<void> | undefined {
  let copies: Promise<void>[] | undefined;
  for (const read of group) {
    const { item } = read;
    if (item.type === "bytes") {
      planner.loadBytes(item, bytes);
      continue;
    }
    if (dest) {
      planner.commitTensor(item, dest);
      continue;
    }
    const target = planner.resolveTensor(item);
    // `saved` only here: a columnar read builds it when asked (an item read in place never is).
    const { saved, start } = read;
    const box: BoxDelivery = { item, saved: saved!, start, bytes, target, planner, workerMinBytes };
    const copying = target.dtype !== saved!.dtype ? castInto(box) : copyInto(box);
    if (copying) {
      copying.catch(() => {}); // surfaced by Promise.all below, or dropped when a later item throws first
      copies ??= [];
      copies.push(copying);
    }
  }
  return copies && Promise.all(copies).then(() => {});
}

/** One tensor item's box to deliver: from its payload (from byte `start` of the stored chunk) into `target`. */
interface BoxDelivery {
  readonly item: ReadItem & { type: "tensor" };
  readonly saved: SavedChunk;
  readonly start: number;
  readonly bytes: Uint8Array;
  readonly target: Tensor;
  readonly planner: LoadPlanner;
  readonly workerMinBytes: number;
}

/** A tensor item's box copied into its target of the saved dtype; a worker's promise where it runs on one. */
function copyInto(d: BoxDelivery): Promise<void> | undefined {
  const { item, saved, start, bytes, target, planner } = d;
  const box = boxCopy(
    saved.chunk.sizes,
    item.storageOffsets,
    target.shape,
    item.destOffsets,
    item.lengths,
    DTYPE_BYTES[target.dtype],
  );
  if (!box) {
    planner.commitTensor(item, target);
    return undefined;
  }
  // `bytes` start at byte `start` of the stored chunk when only some of its blocks were read.
  const copy = start === 0 ? box : { ...box, srcBase: box.srcBase - start };
  const into = tensorBytes(target);
  if (runsOffThread(d.workerMinBytes, copy.bytes, bytes, into))
    return copyOnWorker(bytes, into, copy).then(() => planner.commitTensor(item, target));
  stridedCopy(bytes, into, copy);
  planner.commitTensor(item, target);
  return undefined;
}

/**
 * A tensor item's box cast into a target of another dtype, as torch's `copy_` does (model/cast.ts);
 * a worker's promise where it runs on one (the box at least `workerMinBytes` of the target).
 * @throws {@link CheckpointError} when the dtypes do not cast (`assertCastable`).
 */
function castInto(d: BoxDelivery): Promise<void> | undefined {
  const { item, saved, start, bytes, target, planner } = d;
  assertCastable(saved.dtype, target.dtype, item.destIndex.fqn);
  const box = boxCast(saved.chunk.sizes, item.storageOffsets, target.shape, item.destOffsets, item.lengths);
  if (!box) {
    planner.commitTensor(item, target);
    return undefined;
  }
  // `bytes` start at byte `start` of the stored chunk (a whole number of elements: blocks are).
  const cast = start === 0 ? box : { ...box, srcBase: box.srcBase - start / DTYPE_BYTES[saved.dtype] };
  const into = tensorBytes(target);
  if (runsOffThread(d.workerMinBytes, box.elements * DTYPE_BYTES[target.dtype], bytes, into))
    return castOnWorker(saved.dtype, bytes, target.dtype, into, cast).then(() =>
      planner.commitTensor(item, target),
    );
  castBox(saved.dtype, bytes, target.dtype, into, cast);
  planner.commitTensor(item, target);
  return undefined;
}
