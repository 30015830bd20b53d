// One read pipeline per data file: runs fetched in order with a bounded read-ahead window
// (prefetchInOrder), framed items' frames read ahead of their runs, each run verified by its item
// format and fetched again on a mismatch where the backend says that helps, staging buffers
// recycled once a run is delivered.
import pLimit, { type LimitFunction } from "p-limit";
import { CheckpointError, ChecksumMismatchError, MetadataError, throwIfAborted } from "../errors.js";
import type { ChecksumOffload, PayloadLocation, StoredRead } from "../formats/item-format.js";
import { itemFormatOf } from "../formats/item-formats.js";
import { verifyChecksum } from "../formats/native-item-verify.js";
import type { Tensor } from "../model/tensor.js";
import { retry } from "../retry.js";
import type { FileReadStream, FileSystemBase } from "./filesystem-base.js";
import { prefetchInOrder } from "./ordered-prefetch.js";
import type { DirectTarget } from "./read-delivery.js";
import { expectation, type ItemRead, whereRead } from "./read-locate.js";
import type { FileReadSchedule, ReadCapabilities, ReadRun } from "./read-schedule.js";
import { sharedKey } from "./read-sharing.js";
import type { SharedChunkReads } from "./shared-chunk-reads.js";
import { keepStaging, takeStaging } from "./staging-buffers.js";

/** Runs a reader has in flight per file (read ahead while earlier ones are verified and delivered). */
export const READ_AHEAD_RUNS = 4;

/** Framed items whose frames are read ahead of their runs, per file (at most this many frames in memory). */
const FRAMES_AHEAD = 16;

/** Largest frame (stored bytes beyond the payload) read ahead of a framed item's payload: 1 MiB; an item with more is read whole. */
const MAX_FRAME_BYTES = 1024 * 1024;

/** Gap bytes between the items of a scatter read land here and are dropped (gaps are ≤ 64 KiB by default). */
const discard = new Uint8Array(1024 * 1024);

/** A scheduled run of the reader: read items grouped by stored item, perhaps landing in place. */
export type ScheduledRun = ReadRun<ItemRead, DirectTarget>;

/** A run read and verified, ready to deliver. */
export interface ReadyRun {
  /** The run. */
  readonly run: ScheduledRun;
  /** Each stored item's payload, in run order. */
  readonly payloads: readonly Uint8Array[];
  /** What this rank fetched (absent for a shared read another rank made). */
  readonly fetched?: FetchedRun;
  /** The shared saved chunk's key, for a run read through the process's shared reads. */
  readonly shared?: string;
}

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
interface ItemFrame {
  readonly head: Uint8Array;
  readonly tail: Uint8Array;
}

/** What a file's pipeline reads with. */
export interface ReadPipelineContext {
  /** The backend. */
  readonly fs: FileSystemBase;
  /** The checkpoint path. */
  readonly path: string;
  /** The backend's, resolved. */
  readonly capabilities: ReadCapabilities;
  /** This load's shared reads between the ranks of this process, if the rank shares any. */
  readonly sharing: SharedChunkReads | undefined;
  /** Where item formats may check large items (the worker pool). */
  readonly offload: ChecksumOffload;
}

/**
 * Reads one file's runs in order as a bounded pipeline: up to {@link READ_AHEAD_RUNS} runs are
 * read ahead (in their pieces, `piecesInFlight` at once) and verified while earlier ones are
 * delivered by the consumer. A `direct` run lands in its destination tensor; others go through a
 * (recycled) staging buffer — or, for a saved chunk shared with other ranks of this process,
 * through the one copy read for all of them. A run that fails its check is fetched again through a
 * fresh stream, `capabilities.rereadsOnMismatch` more times at most ({@link retry}). Stopping the
 * loop early settles every read in flight and closes the file.
 * @param schedule - the file's schedule.
 * @param context - see {@link ReadPipelineContext}.
 * @param signal - aborts every read.
 * @throws {@link ChecksumMismatchError} naming the fqn of a damaged item; the backend's errors.
 */
export async function* readRuns(
  schedule: FileReadSchedule<ItemRead, DirectTarget>,
  context: ReadPipelineContext,
  signal: AbortSignal,
): AsyncGenerator<ReadyRun, void, undefined> {
  throwIfAborted(signal);
  const { fs, path, capabilities, sharing, offload } = context;
  const { relativePath, runs } = schedule;
  const stream = await fs.createStream(fs.concatPath(path, relativePath), "rb", {
    signal,
    within: path,
    ranges: schedule.ranges,
  });
  const pieces = pLimit(capabilities.piecesInFlight);
  // The frames of framed items read in place are read ahead of their runs (small reads that
  // would otherwise queue behind the payloads in flight and stall each run's payload read).
  const frames = new Map<ScheduledRun, Promise<ItemFrame>>();
  let framesRead = 0;
  const frameAhead = (upTo: number) => {
    for (; framesRead < Math.min(upTo, runs.length); framesRead++) {
      const run = runs[framesRead]!;
      const frame = run.targets?.length === 1 && run.targets[0]!.framed && readFrame(stream, run, signal);
      if (!frame) continue;
      frame.catch(() => {}); // surfaced when its run is fetched, or dropped with the file's reads
      frames.set(run, frame);
    }
  };
  const refetch = async (run: ScheduledRun): Promise<FetchedRun> => {
    const again = await fs.createStream(fs.concatPath(path, relativePath), "rb", {
      signal,
      within: path,
      access: "random",
    });
    try {
      return await fetchRun(again, run, pieces, signal);
    } finally {
      await again.close();
    }
  };
  const verified = async (run: ScheduledRun): Promise<ReadyRun> => {
    const frame = frames.get(run);
    frames.delete(run);
    let fetched = await fetchRun(stream, run, pieces, signal, frame);
    return retry(
      async (attempt) => {
        if (attempt > 1) fetched = await refetch(run);
        return { run, payloads: await verifyRun(run, fetched, relativePath, offload), fetched };
      },
      // No pause between attempts, so no signal for one: each attempt's reads honour `signal`
      // themselves and fail with this project's ABORTED.
      { attempts: capabilities.rereadsOnMismatch + 1, minDelayMs: 0, shouldRetry: damagedInTransit },
    );
  };
  const fetch = (run: ScheduledRun, index: number): Promise<ReadyRun> => {
    frameAhead(index + FRAMES_AHEAD);
    const key = sharedKey(run, sharing);
    if (key === undefined) return verified(run);
    return sharing!
      .get(key, run.length, async () => {
        const { payloads, fetched } = await verified(run);
        // Only a tensor's staging buffer may be kept for reuse (a planner may keep a value's bytes).
        return { payload: payloads[0]!, staging: tensorsOnly(run) ? fetched?.staging : undefined };
      })
      .then((payload) => ({ run, payloads: [payload], shared: key }));
  };
  try {
    for await (const ready of prefetchInOrder(runs, fetch, READ_AHEAD_RUNS)) {
      throwIfAborted(signal);
      yield ready;
      if (ready.shared !== undefined) sharing!.release(ready.shared);
      // Decoded values may be views of the staging buffer: only recycle it when it held tensors only.
      if (ready.fetched?.staging && tensorsOnly(ready.run)) keepStaging(ready.fetched.staging);
    }
  } finally {
    await Promise.allSettled(frames.values()); // frames read ahead of runs never fetched
    await stream.close();
  }
}

/**
 * Damage in transit (read again where the backend says it helps); damage at rest is not. A
 * PyTorch archive damaged in its zip structure reads as malformed rather than mismatched.
 */
function damagedInTransit(error: unknown): boolean {
  return error instanceof ChecksumMismatchError || error instanceof MetadataError;
}

/**
 * Whether every stored item of a run is a tensor's: its staging buffer then holds no decoded
 * value's bytes, so it may lie in shared memory and be kept for reuse.
 * @param run - a scheduled run.
 */
export function tensorsOnly(run: ScheduledRun): boolean {
  return run.chunks.every((c) => c.items[0]!.item.type === "tensor");
}

/**
 * Whether a run's items are likely checked on a worker thread: large, and landing in shared memory
 * (a staging buffer for tensors, or shared destination tensors) — to start one ahead.
 * @param run - a scheduled run.
 * @param offload - the worker pool's rule.
 */
export function checkedOffThread(run: ScheduledRun, offload: ChecksumOffload): boolean {
  if (run.targets) return offload.runsOffThread(run.length, ...run.targets.map((t) => t.bytes));
  return offload.runsOffThread(run.length) && tensorsOnly(run);
}

/**
 * Checks every stored item of a fetched run, by its item format ({@link ItemFormat.verifyRun} for
 * the run together where the format does, else `verify` or `unframe` each) — a framed item read in
 * place by the checksum its frame records — and returns each item's payload; synchronously where
 * no check runs on a worker.
 * @throws {@link ChecksumMismatchError} naming the first damaged item's fqn.
 */
function verifyRun(
  run: ScheduledRun,
  fetched: FetchedRun,
  relativePath: string,
  offload: ChecksumOffload,
): Uint8Array[] | Promise<Uint8Array[]> {
  const reads = run.chunks.map((stored, i): StoredRead => {
    const read = stored.items[0]!;
    return {
      stored: fetched.stored[i]!,
      info: read.info,
      expect: expectation(read),
      first: read.first,
      fqn: read.item.storageIndex.fqn,
      // Built only for a message (a string per item costs as much as a small item's CRC).
      where: () => whereRead(relativePath, read),
    };
  });
  const inPlace = fetched.payloadSum;
  if (inPlace) {
    const { stored, fqn, where } = reads[0]!;
    const checked = verifyChecksum(
      stored,
      inPlace.checksum,
      undefined,
      0,
      fqn,
      () => `${where()} (${inPlace.what})`,
      offload,
    );
    return checked instanceof Promise ? checked.then((p) => [p]) : [checked];
  }
  const format = itemFormatOf(reads[0]!.info);
  if (format.verifyRun && reads.every((r) => itemFormatOf(r.info) === format)) {
    const together = format.verifyRun(reads, offload, run.length);
    if (together) return together;
  }
  let offThread = false;
  const payloads = reads.map((r) => {
    const f = itemFormatOf(r.info);
    const payload = f.verify ? f.verify(r, offload) : f.unframe(r.stored, r.info, r.expect, r.fqn, r.where());
    if (payload instanceof Promise) offThread = true;
    return payload;
  });
  return offThread ? Promise.all(payloads) : (payloads as Uint8Array[]);
}

/**
 * Reads a run: a `direct` run of one stored item straight into its destination (in pieces, in
 * parallel; a framed one's frame first, see {@link fetchInPlace}), of several with one scatter read
 * into theirs; a `staged` run into a (recycled) staging buffer, in pieces where the stream has
 * `readInto`.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when a backend declares `scatterReads` but
 * its stream has no `readvInto`.
 */
async function fetchRun(
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
    run.chunks.forEach((stored, i) => {
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
  const staging = direct
    ? undefined
    : tensorsOnly(run)
      ? takeStaging(length)
      : Buffer.allocUnsafeSlow(length);
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
  const stored = run.chunks.map((c) => bytes.subarray(c.offset - offset, c.offset - offset + c.length));
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
 */
function readFrame(
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
  const read = run.chunks[0]!.items[0]!;
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
