// One read pipeline per data file: runs fetched (read-fetch.ts) in order with a bounded read-ahead
// window (prefetchInOrder), framed items' frames read ahead of their runs, each run verified by its
// item format and fetched again on a mismatch where the backend says that helps (retry), staging
// buffers recycled once a run is delivered.
import pLimit from "p-limit";
import { ChecksumMismatchError, MetadataError, throwIfAborted } from "../errors.js";
import { checksumName, computeChecksum } from "../formats/checksum.js";
import type { ChecksumOffload, ItemExpectation, StoredRead } from "../formats/item-format.js";
import { itemFormatOf } from "../formats/item-formats.js";
import { NATIVE_ITEM_FORMAT } from "../formats/native-item-format.js";
import { verifyChecksum } from "../formats/native-item-verify.js";
import type { StorageInfo } from "../plan/metadata.js";
import { retry } from "../retry.js";
import type { FileSystemBase } from "./filesystem-base.js";
import { prefetchInOrder } from "./ordered-prefetch.js";
import type { DirectTarget } from "./read-delivery.js";
import {
  type FetchedRun,
  fetchRun,
  type ItemFrame,
  readFrame,
  type ScheduledRun,
  tensorsOnly,
} from "./read-fetch.js";
import { expectation, type ItemRead, whereRead } from "./read-locate.js";
import type { FileReadSchedule, ReadCapabilities } from "./read-schedule.js";
import { sharedKey } from "./read-sharing.js";
import { resolveDataFile } from "./reference-paths.js";
import type { SharedChunkReads } from "./shared-chunk-reads.js";
import { keepStaging } from "./staging-buffers.js";
import { WORKER_MIN_PART_BYTES } from "./worker-limits.js";

/** Runs a reader has in flight per file (read ahead while earlier ones are verified and delivered). */
export const READ_AHEAD_RUNS = 4;

/** Framed items whose frames are read ahead of their runs, per file (at most this many frames in memory). */
const FRAMES_AHEAD = 16;

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
  // A referenced item's file lies in a sibling checkpoint (an incremental checkpoint's base).
  const { checkpoint, file } = resolveDataFile(path, relativePath);
  const stream = await fs.createStream(fs.concatPath(checkpoint, file), "rb", {
    signal,
    within: checkpoint,
    runs: schedule.runs,
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
    const again = await fs.createStream(fs.concatPath(checkpoint, file), "rb", {
      signal,
      within: checkpoint,
      access: "random",
      refetch: true,
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
    const fetched = await fetchRun(stream, run, pieces, signal, frame);
    try {
      return { run, payloads: await verifyRun(run, fetched, relativePath, offload), fetched };
    } catch (error) {
      if (capabilities.rereadsOnMismatch === 0 || !damagedInTransit(error)) throw error;
    }
    // Read again through a fresh stream (a new request) — only once the first read failed, so a
    // run that verifies pays nothing for the policy. No pause between attempts, so no signal for
    // one: each attempt's reads honour `signal` themselves and fail with this project's ABORTED.
    return retry(
      async () => {
        const again = await refetch(run);
        return { run, payloads: await verifyRun(run, again, relativePath, offload), fetched: again };
      },
      { attempts: capabilities.rereadsOnMismatch, minDelayMs: 0, shouldRetry: damagedInTransit },
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
 * Whether a run's items are likely checked on a worker thread: large, landing in shared memory
 * (a staging buffer for tensors, or shared destination tensors), and — for a run of several items —
 * not so small that their CRCs stay on this thread (under {@link WORKER_MIN_PART_BYTES} on average,
 * as the offload's `checksums` decides) — to start one ahead. A hint: a worker that is not started
 * ahead starts with its first task.
 * @param run - a scheduled run.
 * @param offload - the worker pool's rule.
 */
export function checkedOffThread(run: ScheduledRun, offload: ChecksumOffload): boolean {
  if (!offload.runsOffThread(run.length)) return false;
  if (run.ranges.length > 1) {
    let bytes = 0;
    for (const stored of run.ranges) bytes += stored.length;
    if (bytes < WORKER_MIN_PART_BYTES * run.ranges.length) return false;
  }
  // One call per target: spreading 100,000 targets into one call overflows the stack.
  if (run.targets) return run.targets.every((t) => offload.runsOffThread(run.length, t.bytes));
  return tensorsOnly(run);
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
  const inPlace = fetched.payloadSum;
  const onThread = inPlace ? undefined : checkTinyItems(run, fetched, relativePath, offload);
  if (onThread) return onThread;
  const reads = run.ranges.map(
    (stored, i) => new RunItemRead(fetched.stored[i]!, stored.items[0]!, relativePath),
  );
  if (inPlace) {
    const { stored, fqn } = reads[0]!;
    const where = reads[0]!.where;
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
 * Checks a run of dcpjs's own items that are small on average (under {@link WORKER_MIN_PART_BYTES})
 * on this thread, from each item's {@link ItemRead} — the same CRCs and order of checks as the
 * native format's `verifyRun` and `verify` (which keep such items on this thread too), without an
 * object per item; undefined (verify by the format) for a run of other items, of items read in
 * part, with running checksums or without a checksum, or where some item would be checked on a
 * worker thread.
 * @throws {@link ChecksumMismatchError} naming the first damaged item's fqn.
 */
function checkTinyItems(
  run: ScheduledRun,
  fetched: FetchedRun,
  relativePath: string,
  offload: ChecksumOffload,
): Uint8Array[] | undefined {
  const { ranges } = run;
  const stored = fetched.stored;
  let bytes = 0;
  for (let i = 0; i < ranges.length; i++) {
    const read = ranges[i]!.items[0]!;
    if (read.format !== NATIVE_ITEM_FORMAT || read.blocked || read.crc === undefined || read.first !== 0)
      return undefined;
    if (read.crcAlgorithm !== ranges[0]!.items[0]!.crcAlgorithm) return undefined;
    bytes += stored[i]!.byteLength;
  }
  if (bytes >= WORKER_MIN_PART_BYTES * ranges.length) return undefined;
  // As the format decides: a run of several goes to the offload's `checksums` where every item
  // could go to a worker (which keeps parts this small on this thread), else each item by itself.
  let together = ranges.length > 1;
  for (let i = 0; i < stored.length && together; i++)
    together = offload.runsOffThread(run.length, stored[i]!);
  if (!together) for (const s of stored) if (offload.runsOffThread(s.byteLength, s)) return undefined;
  for (let i = 0; i < ranges.length; i++) {
    const read = ranges[i]!.items[0]!;
    const got = computeChecksum(read.crcAlgorithm!, stored[i]!);
    if (got !== read.crc)
      throw new ChecksumMismatchError(
        read.item.storageIndex.fqn,
        read.crc!,
        got,
        whereRead(relativePath, read),
        checksumName(read.crcAlgorithm!),
      );
  }
  return stored as Uint8Array[];
}

/**
 * A stored item of a run as its item format verifies it ({@link StoredRead}): three fields, the
 * rest read from its {@link ItemRead} when asked — a run of 100,000 small items holds 100,000 of
 * these until it is verified, so each is kept small, and `where`'s closure (for a message) is made
 * only when asked for.
 */
class RunItemRead implements StoredRead {
  readonly stored: Uint8Array;
  readonly #read: ItemRead;
  readonly #relativePath: string;

  constructor(stored: Uint8Array, read: ItemRead, relativePath: string) {
    this.stored = stored;
    this.#read = read;
    this.#relativePath = relativePath;
  }

  get info(): StorageInfo {
    return this.#read.info;
  }

  get expect(): ItemExpectation {
    return expectation(this.#read);
  }

  get first(): number {
    return this.#read.first;
  }

  get fqn(): string {
    return this.#read.item.storageIndex.fqn;
  }

  get where(): () => string {
    const read = this.#read;
    const relativePath = this.#relativePath;
    return () => whereRead(relativePath, read);
  }
}
