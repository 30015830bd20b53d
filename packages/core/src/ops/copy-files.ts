// The piece-by-piece copy of one file between backends that `copyCheckpoint` runs for every file
// of a checkpoint (a DCP data file, a safetensors shard, a repository's small files): ranged reads
// of at most COPY_PIECE_BYTES under one budget, read ahead of the writes in order, each item
// verified (length, and its checksum when it has one) before its last piece is written.
import type { LimitFunction } from "p-limit";
import { CheckpointError, throwIfAborted } from "../errors.js";
import { checksumName, computeChecksum, itemChecksum } from "../formats/checksum.js";
import type { StorageInfo } from "../plan/metadata.js";
import type { FileReadStream, FileSystemBase, FileWriteStream } from "../storage/filesystem-base.js";
import { prefetchInOrder } from "../storage/ordered-prefetch.js";
import type { Located } from "./locate.js";

/** The largest ranged read of `copyCheckpoint` (bytes): items larger than this are read in pieces. */
export const COPY_PIECE_BYTES = 8 * 1024 * 1024;

/** One item of a file: where it is stored, and its entry's fqn (for messages). */
export interface FileItem {
  readonly info: StorageInfo;
  readonly fqn: string;
}

/** One file to copy: its path relative to the checkpoint, its items, and its size. */
export interface FileToCopy {
  readonly file: string;
  /** Its items (any order); bytes outside them (headers, gaps) are copied as they are. */
  readonly items: FileItem[];
  /** Its size (bytes): the end of its last item for a DCP data file; the whole file otherwise. */
  readonly size: number;
  /**
   * Whether a destination file may be kept instead of copied: when its items all verify (and,
   * with `sameHead`, its size and its bytes before the first item equal the source's). @default true
   */
  readonly incremental?: boolean;
  /** Keep a destination file only when its size and its bytes before its first item (a header) equal the source's. @default false */
  readonly sameHead?: boolean;
  /**
   * Where the file is read from when not from the copy's source checkpoint: the base checkpoint
   * (a sibling of the source) whose file an incremental checkpoint's items reference.
   * @default the run's `from`
   */
  readonly from?: Located;
}

/** What the copy of several files shares: both ends, the read budget, progress and the signal. */
export interface CopyRun {
  /** The source as the caller named it (messages). */
  readonly src: string;
  readonly from: Located;
  readonly to: Located;
  /** The budget of ranged reads in flight, over all files. */
  readonly reads: LimitFunction;
  /** How many pieces of one file are read ahead of its writes. */
  readonly readAhead: number;
  /** Adds bytes done (copied, or found intact) to the operation's progress. */
  readonly progress: (bytes: number) => void;
  readonly signal: AbortSignal | undefined;
}

/** How the copy of one file went: copied (and how many item bytes) or kept. */
export type FileCopied = { readonly copied: true; readonly itemBytes: number } | { readonly copied: false };

/** One ranged read of a copy: bytes `[offset, offset + length)`, part of item `item` (or of a gap). */
interface Piece {
  readonly offset: number;
  readonly length: number;
  readonly item: FileItem | undefined;
  /** The item's last piece: its CRC is checked after it. */
  readonly last: boolean;
}

/** A file's reads, in file order: each item (and each gap between items, and the tail up to `size`) cut into pieces. */
function piecesOf(items: readonly FileItem[], size: number): Piece[] {
  const pieces: Piece[] = [];
  const cut = (offset: number, length: number, item: Piece["item"]) => {
    if (length === 0 && item) pieces.push({ offset, length: 0, item, last: true });
    for (let at = 0; at < length; at += COPY_PIECE_BYTES) {
      const n = Math.min(COPY_PIECE_BYTES, length - at);
      pieces.push({ offset: offset + at, length: n, item, last: at + n === length });
    }
  };
  let at = 0;
  for (const item of items) {
    if (item.info.offset > at) cut(at, item.info.offset - at, undefined); // bytes between items, as they are
    cut(item.info.offset, item.info.length, item);
    at = Math.max(at, item.info.offset + item.info.length);
  }
  if (size > at) cut(at, size - at, undefined);
  return pieces;
}

/**
 * Checks the items of a file as its pieces arrive, in order: each item's length, and its checksum
 * (a running CRC over its pieces) when it has one — PyTorch items carry their own zip CRCs.
 */
class ItemChecker {
  #crc = 0;
  #bytes = 0;

  /**
   * Takes one piece's bytes.
   * @returns the item that ended with this piece and does not match its length or checksum; undefined otherwise.
   */
  take(piece: Piece, data: Uint8Array): { item: FileItem; what: string } | undefined {
    if (!piece.item) return undefined;
    const sum = itemChecksum(piece.item.info);
    if (sum) this.#crc = computeChecksum(sum.algorithm, data, this.#bytes === 0 ? undefined : this.#crc);
    this.#bytes += data.byteLength;
    if (!piece.last) return undefined;
    const ok = this.#bytes === piece.item.info.length && (sum === undefined || this.#crc === sum.value);
    this.#crc = 0;
    this.#bytes = 0;
    return ok ? undefined : { item: piece.item, what: sum ? checksumName(sum.algorithm) : "length" };
  }
}

/** Reads `pieces` of `path` in order under the read budget, `readAhead` ahead. */
function readPieces(
  run: CopyRun,
  stream: FileReadStream,
  pieces: readonly Piece[],
): AsyncGenerator<Uint8Array> {
  return prefetchInOrder(
    pieces,
    (p) => run.reads(() => stream.read(p.offset, p.length, run.signal)),
    run.readAhead,
  );
}

/** Whether every item of a file at `path` matches its length and checksum, read in pieces (bounded memory). */
async function itemsIntact(
  run: CopyRun,
  fs: FileSystemBase,
  path: string,
  items: readonly FileItem[],
): Promise<boolean> {
  const stream = await fs.createStream(path, "rb", { access: "random" });
  try {
    const pieces = piecesOf(items, 0).filter((p) => p.item !== undefined);
    const checker = new ItemChecker();
    let at = 0;
    for await (const data of readPieces(run, stream, pieces))
      if (checker.take(pieces[at++]!, data) !== undefined) return false;
    return true;
  } finally {
    await stream.close();
  }
}

/** Whether the destination already holds `plan`'s file intact (see {@link FileToCopy.incremental}). */
async function keptAtDestination(run: CopyRun, plan: FileToCopy, target: string): Promise<boolean> {
  const { to, signal } = run;
  const from = plan.from ?? run.from;
  try {
    if (plan.sameHead) {
      const head = plan.items.length > 0 ? plan.items[0]!.info.offset : plan.size;
      const out = await to.fs.createStream(target, "rb", { access: "random" });
      let theirs: Uint8Array;
      try {
        if ((await out.size(signal)) !== plan.size) return false;
        theirs = await out.read(0, head, signal);
      } finally {
        await out.close();
      }
      const source = await from.fs.createStream(from.fs.concatPath(from.root, plan.file), "rb", {
        access: "random",
      });
      let ours: Uint8Array;
      try {
        ours = await source.read(0, head, signal);
      } finally {
        await source.close();
      }
      if (ours.byteLength !== theirs.byteLength || !ours.every((b, i) => b === theirs[i])) return false;
    }
    return await itemsIntact(run, to.fs, target, plan.items);
  } catch (error) {
    throwIfAborted(signal);
    if (error instanceof CheckpointError && error.code === "ABORTED") throw error;
    return false; // missing or unreadable: copied
  }
}

/**
 * Copies one file from `run.from` to `run.to` (a verified, ranged copy): every byte up to
 * `plan.size`, each item checked on arrival; a file whose bytes fall short fails naming it. A file
 * the destination already holds intact is kept ({@link FileToCopy.incremental}).
 *
 * @param run - what the copies share.
 * @param plan - the file.
 * @returns whether it was copied, and its item bytes.
 * @throws {@link CheckpointError} `CHECKSUM_MISMATCH` naming the fqn and file when an item does
 * not match its checksum or length (the destination file is removed); `TRUNCATED` naming the file
 * when bytes between items fall short; `ABORTED`; the backends' errors.
 */
export async function copyFile(run: CopyRun, plan: FileToCopy): Promise<FileCopied> {
  const { to, signal, src } = run;
  const from = plan.from ?? run.from;
  const { file } = plan;
  // A base's file is named as where it lies (the base checkpoint's), not under the source.
  const where = plan.from ? from.fs.concatPath(from.root, file) : `${src}/${file}`;
  throwIfAborted(signal);
  const items = [...plan.items].sort((a, b) => a.info.offset - b.info.offset);
  const sorted = { ...plan, items };
  const target = to.fs.concatPath(to.root, file);
  if ((plan.incremental ?? true) && (await keptAtDestination(run, sorted, target))) {
    run.progress(plan.size);
    return { copied: false };
  }
  const source = await from.fs.createStream(from.fs.concatPath(from.root, file), "rb", { access: "random" });
  const pieces = piecesOf(items, plan.size);
  let out: FileWriteStream;
  try {
    out = await to.fs.createStream(target, "wb");
  } catch (error) {
    await source.close();
    throw error;
  }
  let itemBytes = 0;
  try {
    const checker = new ItemChecker();
    let at = 0;
    // Reads run ahead of the writes by at most `readAhead` pieces of this file (backpressure).
    for await (const data of readPieces(run, source, pieces)) {
      throwIfAborted(signal);
      const piece = pieces[at++]!;
      const bad = checker.take(piece, data);
      if (bad) {
        const { item, what } = bad;
        throw new CheckpointError(
          "CHECKSUM_MISMATCH",
          `Expected "${item.fqn}" in ${where} @ ${item.info.offset}+${item.info.length} to match its ${what}; it does not: not copied`,
        );
      }
      if (piece.item) itemBytes += data.byteLength;
      else if (data.byteLength !== piece.length)
        throw new CheckpointError(
          "TRUNCATED",
          `Expected ${piece.length} bytes at ${piece.offset} of ${where}, got ${data.byteLength}: not copied`,
        );
      run.progress(data.byteLength);
      await out.write(data);
    }
    await out.sync();
    await out.close();
    return { copied: true, itemBytes };
  } catch (error) {
    await out.abort(error);
    throw error;
  } finally {
    await source.close();
  }
}
