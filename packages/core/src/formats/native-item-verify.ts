// How dcpjs's native items are checksummed on a worker thread on write, and verified on read: by their storage entry's checksum alone (the
// running checksums at block ends for a partial read), on a worker thread where it is large and in
// shared memory, and a run of small items by one worker task.
import type { WriteItem } from "../plan/metadata.js";
import {
  assertItemBlocks,
  assertRunningChecksums,
  blockChecksumFields,
  CHECKSUM_BLOCK_BYTES,
  type ChecksumBlocks,
  ITEM_CHECKSUM_ALGORITHM,
  type ItemChecksum,
  itemChecksum,
  runningBefore,
} from "./checksum.js";
import type { ChecksumOffload, FramedItem, StoredRead } from "./item-format.js";

/**
 * Checks bytes against a checksum — an item's, with its running checksums `blocks` from block
 * `first` on, or a payload's as its frame records it (`PayloadLocation.checksum`, no blocks) — on a
 * worker thread where `offload` says so (the promise then rejects on damage), else on this one.
 * @param bytes - the bytes read.
 * @param sum - their checksum.
 * @param blocks - the item's running checksums, if any.
 * @param first - the block the bytes start at.
 * @param fqn - for the message.
 * @param where - for the message (built only on a mismatch).
 * @param offload - the reader's worker threads.
 * @returns `bytes`, once checked.
 * @throws {@link ChecksumMismatchError} at the first block that differs.
 */
export function verifyChecksum(
  bytes: Uint8Array,
  sum: ItemChecksum,
  blocks: ChecksumBlocks | undefined,
  first: number,
  fqn: string,
  where: () => string,
  offload: ChecksumOffload,
): Uint8Array | Promise<Uint8Array> {
  if (!offload.runsOffThread(bytes.byteLength, bytes)) {
    assertItemBlocks(sum, blocks, first, bytes, fqn, where);
    return bytes;
  }
  const checked = offload
    .runningChecksums(
      sum.algorithm,
      bytes,
      blocks?.blockBytes ?? Number.POSITIVE_INFINITY,
      runningBefore(blocks, first),
    )
    .then((running) => {
      assertRunningChecksums(sum, blocks, first, running, fqn, where);
      return bytes;
    });
  // Surfaced where the caller awaits it — or dropped when a later item fails first, synchronously.
  checked.catch(() => {});
  return checked;
}

/**
 * {@link ItemFormat.verify} of the native format: the item's checksum (its running checksums at
 * block ends where it has them: a partial read by those of the blocks it read); an item recorded
 * without a checksum is taken as it is.
 * @param read - what was read.
 * @param offload - the reader's worker threads.
 */
export function verifyNativeItem(
  read: StoredRead,
  offload: ChecksumOffload,
): Uint8Array | Promise<Uint8Array> {
  const sum = itemChecksum(read.info);
  if (!sum) return read.stored;
  return verifyChecksum(
    read.stored,
    sum,
    read.info.checksumBlocks,
    read.first,
    read.fqn,
    read.where,
    offload,
  );
}

/**
 * {@link ItemFormat.verifyRun} of the native format: the CRCs of a run of several small items
 * computed by one worker task (one round trip), when the run is at least the offload's smallest
 * task, every item lies in shared memory and is read whole, recorded without running checksums,
 * with one checksum algorithm; otherwise undefined.
 * @param reads - the run's items.
 * @param offload - the reader's worker threads.
 * @param runBytes - the run's bytes, gaps included.
 * @throws {@link ChecksumMismatchError} naming the first damaged item's fqn (the promise rejects).
 */
export function verifyNativeRun(
  reads: readonly StoredRead[],
  offload: ChecksumOffload,
  runBytes: number,
): Promise<Uint8Array[]> | undefined {
  const stored = reads.map((r) => r.stored);
  // One call per item: spreading 100,000 items into one call overflows the stack.
  if (reads.length < 2 || !stored.every((s) => offload.runsOffThread(runBytes, s))) return undefined;
  const sums: ItemChecksum[] = [];
  for (const { info, first } of reads) {
    const sum = itemChecksum(info);
    // Items with running checksums (longer than a block) are checked block by block, alone.
    if (!sum || info.checksumBlocks || first !== 0) return undefined;
    if (sums.length > 0 && sum.algorithm !== sums[0]!.algorithm) return undefined;
    sums.push(sum);
  }
  return offload.checksums(sums[0]!.algorithm, stored).then((values) => {
    reads.forEach((r, i) => {
      assertRunningChecksums(sums[i]!, undefined, 0, [values[i]!], r.fqn, r.where);
    });
    return stored;
  });
}

/**
 * {@link ItemFormat.frameOnWorker} of the native format: a tensor item in shared memory of at
 * least the offload's smallest task is written as it is while a worker computes its running
 * CRC-32s (every {@link CHECKSUM_BLOCK_BYTES}) and, where the offload offers it, its content hash;
 * undefined for values and smaller items.
 * @param item - the write item.
 * @param payload - its C-order bytes.
 * @param offload - the writer's worker threads.
 */
export function frameNativeOnWorker(
  item: WriteItem,
  payload: Uint8Array,
  offload: ChecksumOffload,
): { readonly parts: readonly Uint8Array[]; readonly info: Promise<FramedItem["info"]> } | undefined {
  if (item.type === "bytes" || !offload.runsOffThread(payload.byteLength, payload)) return undefined;
  const info: Promise<FramedItem["info"]> = offload.checksumsAndHash
    ? offload
        .checksumsAndHash(ITEM_CHECKSUM_ALGORITHM, payload, CHECKSUM_BLOCK_BYTES)
        .then(({ running, contentHash }) => ({
          ...blockChecksumFields(ITEM_CHECKSUM_ALGORITHM, running, CHECKSUM_BLOCK_BYTES),
          contentHash,
        }))
    : offload
        .runningChecksums(ITEM_CHECKSUM_ALGORITHM, payload, CHECKSUM_BLOCK_BYTES)
        .then((running) => blockChecksumFields(ITEM_CHECKSUM_ALGORITHM, running, CHECKSUM_BLOCK_BYTES));
  info.catch(() => {}); // surfaced where the writer awaits it
  return { parts: [payload], info };
}
