// Fetching one scheduled run of a data file: into a (recycled) staging buffer, straight into its
// destination (in pieces, or one scatter read for several stored items), or — for a framed item —
// its frame first, then its payload in place.

import type { LimitFunction } from "p-limit";
import { allocBytes } from "#platform";
import { CheckpointError } from "../errors.js";
import type { PayloadLocation } from "../formats/item-format.js";
import { itemFormatOf } from "../formats/item-formats.js";
import type { Tensor } from "../model/tensor.js";
import type { FileReadStream } from "./filesystem-base.js";
import type { DirectTarget } from "./read-delivery.js";
import { expectation, type ItemRead, whereRead } from "./read-locate.js";
import type { ReadRun } from "./read-schedule.js";
import { takeStaging } from "./staging-buffers.js";

/** Largest frame (stored bytes beyond the payload) read ahead of a framed item's payload: 1 MiB; an item with more is read whole. */
const MAX_FRAME_BYTES = 1024 * 1024;

/** Gap bytes between the items of a scatter read land here and are dropped (gaps are ≤ 64 KiB by default). */
const discard = new Uint8Array(1024 * 1024);

/** A scheduled run of the reader: read items grouped by stored item, perhaps landing in place. */
export type ScheduledRun = ReadRun<ItemRead, DirectTarget>;

/** A fetched run: each stored item's bytes and, for a run read in place, the tensors they landed in. */
export interface FetchedRun {
  /** Each stored item's bytes, in run order. */
  readonly stored: readonly Uint8Array[];
  /** The staging buffer they lie in, for a staged run (recycled). */
  readonly staging: Uint8Array | undefined;
  /** Each stored item's destination tensor, for a direct run. */
  readonly dests: readonly Tensor[] | undefined;
  /** For a framed item read in place: the checksum its frame records over the payload read. */
  readonly payloadSum?: PayloadLocation;
}

/** A framed item's first and last `length − payload` bytes. */
export interface ItemFrame {
  readonly head: Uint8Array;
  readonly tail: Uint8Array;
}

/**
 * Whether every stored item of a run is a tensor's: its staging buffer then holds no decoded
 * value's bytes, so it may lie in shared memory and be kept for reuse.
 * @param run - a scheduled run.
 */
export function tensorsOnly(run: ScheduledRun): boolean {
  return run.ranges.every((c) => c.items[0]!.item.type === "tensor");
}

/**
 * Reads a run: a `direct` run of one stored item straight into its destination (in pieces, in
 * parallel; a framed one's frame first, see {@link fetchInPlace}), of several with one scatter read
 * into theirs; a `staged` run into a (recycled) staging buffer, in pieces where the stream has
 * `readInto`.
 * @param stream - the file, opened with the schedule's ranges (or a fresh random-access one).
 * @param run - the run.
 * @param pieces - limits the pieces of the file in flight (`piecesInFlight`).
 * @param signal - aborts the reads.
 * @param frame - a framed item's frame, read ahead ({@link readFrame}).
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when a backend declares `scatterReads` but
 * its stream has no `readvInto`.
 */
export async function fetchRun(
  stream: FileReadStream,
  run: ScheduledRun,
  pieces: LimitFunction,
  signal: AbortSignal,
  frame?: Promise<ItemFrame>,
): Promise<FetchedRun> {
  const { offset, length } = run;
  const framed = run.targets?.some((t) => t.framed) ?? false;
  if (framed && run.targets!.length === 1) {
    const inPlace = await fetchInPlace(stream, run, run.targets![0]!, pieces, signal, frame);
    if (inPlace) return inPlace;
  }
  // A framed item not read in place (or among others) is staged whole and unframed.
  const targets = framed ? undefined : run.targets;
  if (targets && targets.length > 1) {
    if (!stream.readvInto)
      throw new CheckpointError(
        "INVALID_ARGUMENT",
        "Expected readvInto on the streams of a backend that declares scatterReads, found none",
      );
    const buffers: Uint8Array[] = [];
    let at = offset;
    run.ranges.forEach((stored, i) => {
      for (let gap = stored.offset - at; gap > 0; gap -= discard.byteLength)
        buffers.push(discard.subarray(0, Math.min(gap, discard.byteLength)));
      buffers.push(targets[i]!.bytes);
      at = stored.offset + stored.length;
    });
    await stream.readvInto(offset, buffers, signal);
    return { stored: targets.map((t) => t.bytes), staging: undefined, dests: targets.map((t) => t.dest) };
  }
  const direct = targets?.[0];
  // Tensor items are staged in shared memory (checked and copied on worker threads), in a kept
  // buffer where one fits; other items in a plain buffer, as decoded values may view it.
  const staging = direct ? undefined : tensorsOnly(run) ? takeStaging(length) : allocBytes(length);
  const bytes = direct ? direct.bytes : staging!.subarray(0, length);
  if (!stream.readInto) {
    bytes.set(await stream.read(offset, length, signal));
  } else {
    await allPieces(
      run.pieces.map((p) =>
        pieces(() =>
          stream.readInto!(offset + p.offset, bytes.subarray(p.offset, p.offset + p.length), signal),
        ),
      ),
    );
  }
  if (direct) return { stored: [bytes], staging: undefined, dests: [direct.dest] };
  const stored = run.ranges.map((c) => bytes.subarray(c.offset - offset, c.offset - offset + c.length));
  return { stored, staging, dests: undefined };
}

/** Every piece settles before the run does (its buffer may be recycled); the first failure wins. */
async function allPieces(reads: readonly Promise<void>[]): Promise<void> {
  const failed = (await Promise.allSettled(reads)).find((r) => r.status === "rejected");
  if (failed) throw failed.reason;
}

/** Reads `into.byteLength` bytes of the stream at `at` into `into`. */
async function readAt(
  stream: FileReadStream,
  at: number,
  into: Uint8Array,
  signal: AbortSignal,
): Promise<void> {
  if (stream.readInto) await stream.readInto(at, into, signal);
  else into.set(await stream.read(at, into.byteLength, signal));
}

/**
 * A framed item's frame: its first and last `length − payload` bytes; undefined when that is
 * not between 1 byte and {@link MAX_FRAME_BYTES} (the item is then read whole).
 * @param stream - the file.
 * @param run - a direct run of one framed stored item.
 * @param signal - aborts the reads.
 */
export function readFrame(
  stream: FileReadStream,
  run: ScheduledRun,
  signal: AbortSignal,
): Promise<ItemFrame> | undefined {
  const { offset, length } = run;
  const frameBytes = length - run.targets![0]!.bytes.byteLength;
  if (frameBytes <= 0 || frameBytes > MAX_FRAME_BYTES) return undefined;
  const head = new Uint8Array(frameBytes);
  const tail = new Uint8Array(frameBytes);
  return Promise.all([
    readAt(stream, offset, head, signal),
    readAt(stream, offset + length - frameBytes, tail, signal),
  ]).then(() => ({ head, tail }));
}

/**
 * Reads a framed tensor item straight into its destination: its frame (read ahead, or now), then —
 * where the format finds its payload there (`payloadFrame.locate`) — the payload into `target`, in
 * pieces; undefined (read it whole instead) where it does not.
 */
async function fetchInPlace(
  stream: FileReadStream,
  run: ScheduledRun,
  target: DirectTarget,
  pieces: LimitFunction,
  signal: AbortSignal,
  ahead: Promise<ItemFrame> | undefined,
): Promise<FetchedRun | undefined> {
  const read = run.ranges[0]!.items[0]!;
  const frame = itemFormatOf(read.info).payloadFrame!;
  const payload = target.bytes.byteLength;
  const framed = ahead ?? readFrame(stream, run, signal);
  if (!framed) return undefined;
  const { head, tail } = await framed;
  const expect = expectation(read);
  if (expect.kind !== "tensor") return undefined;
  const fqn = read.item.storageIndex.fqn;
  const at = frame.locate(head, tail, read.info, expect, fqn, whereRead(read.relativePath, read));
  if (!at) return undefined;
  const pieceBytes = run.pieces[0]!.length || payload;
  const reads: Promise<void>[] = [];
  for (let p = 0; p < payload; p += pieceBytes) {
    const part = target.bytes.subarray(p, Math.min(payload, p + pieceBytes));
    reads.push(pieces(() => readAt(stream, run.offset + at.offset + p, part, signal)));
  }
  await allPieces(reads);
  return { stored: [target.bytes], staging: undefined, dests: [target.dest], payloadSum: at };
}
