// An incremental save's first pass, before any write: which planned items are unchanged since the
// base (referenced) and which are written.
import pLimit from "p-limit";
import { throwIfAborted } from "../errors.js";
import type { WriteItem, WriteResult } from "../plan/metadata.js";
import {
  baseEntryFor,
  type IncrementalBase,
  notInBase,
  referenceTo,
  sameItemInBase,
} from "./incremental-base.js";

/** Items hashed at once by the compare pass (on worker threads, where large). */
const HASHES_IN_FLIGHT = 8;

/**
 * Splits a rank's planned items into references to the base and items to write: each item the
 * base stored alike ({@link baseEntryFor}) is declared unchanged (then referenced without
 * hashing) or hashed — the content hash alone: only the items written are checksummed, by the
 * write pass — and referenced when its content hash equals the base's. Items are only viewed
 * (tensor memory, the planner's encoded values), never copied, so the pass adds no memory.
 *
 * @param base - the base.
 * @param items - the rank's planned items.
 * @param ownName - the name of the checkpoint saved (never referenced).
 * @param bytesOf - an item's bytes (the planner's `resolveData`).
 * @param hashOf - the content hash of an item's bytes (on a worker thread where large).
 * @param signal - aborts the pass.
 * @returns the references' results (`sizeInBytes` 0) and the items to write, in plan order.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` for an item declared unchanged that the base
 * does not hold alike (one it holds alike in this checkpoint, or in one past the reference bound,
 * is written).
 */
export async function compareWithBase(
  base: IncrementalBase,
  items: readonly WriteItem[],
  ownName: string,
  bytesOf: (item: WriteItem) => Uint8Array,
  hashOf: (item: WriteItem, bytes: Uint8Array) => string | Promise<string>,
  signal?: AbortSignal,
): Promise<{ references: WriteResult[]; toWrite: WriteItem[] }> {
  const limit = pLimit(HASHES_IN_FLIGHT);
  const decided = await Promise.all(
    items.map((item) => {
      const info = baseEntryFor(base, item, ownName);
      if (base.unchanged(item.index.fqn)) {
        if (info) return { item, reference: referenceTo(base, info) };
        // Held alike, but by this checkpoint or one past the reference bound: written anew.
        if (sameItemInBase(base, item)) return { item, reference: undefined };
        throw notInBase(base, item);
      }
      if (info?.contentHash === undefined) return { item, reference: undefined };
      return limit(async () => {
        throwIfAborted(signal);
        const bytes = bytesOf(item);
        const same = (await hashOf(item, bytes)) === info.contentHash && bytes.byteLength === info.length;
        return { item, reference: same ? referenceTo(base, info) : undefined };
      });
    }),
  );
  const references: WriteResult[] = [];
  const toWrite: WriteItem[] = [];
  for (const { item, reference } of decided) {
    if (reference) references.push({ index: item.index, sizeInBytes: 0, storageData: reference });
    else toWrite.push(item);
  }
  return { references, toWrite };
}
