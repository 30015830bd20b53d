import pLimit from "p-limit";
import { CheckpointError, throwIfAborted } from "../errors.js";
import { decodeCheckpointMetadata } from "../formats/checkpoint-metadata.js";
import { checksumName, computeChecksum, itemChecksum } from "../formats/checksum.js";
import type { StorageInfo } from "../plan/metadata.js";
import type { FileSystemBase } from "../storage/filesystem-base.js";
import { METADATA_FILE, metadataTmpFile } from "../storage/layout.js";
import { prefetchInOrder } from "../storage/ordered-prefetch.js";
import { readWholeFile } from "../storage/read-whole-file.js";
import { writeWholeFile } from "../storage/write-whole-file.js";
import { locate } from "./locate.js";
import type { OperationProgress } from "./progress.js";

/** What {@link copyCheckpoint} did. */
export interface CopyReport {
  /** Data files copied. */
  readonly copied: string[];
  /** Data files skipped because the destination already held them intact. */
  readonly skipped: string[];
  /** Item bytes copied. */
  readonly bytes: number;
}

/** Options of {@link copyCheckpoint}. */
export interface CopyOptions {
  /**
   * The connection budget: ranged reads in flight at once, over all files (each of at most
   * {@link COPY_PIECE_BYTES}); files are copied in parallel within it. Memory: about
   * `concurrency × 2 × COPY_PIECE_BYTES` of pieces waiting to be written. @default 8
   */
  readonly concurrency?: number;
  /**
   * Called as bytes are copied (or found intact and skipped), with the data files' bytes done
   * so far and in all.
   */
  readonly onProgress?: OperationProgress;
  /**
   * A read cache folder for the source, for a backend that has one (S3's `S3ReadCache`): bytes
   * this machine fetched before are read from disk. @default no cache
   */
  readonly cacheDir?: string;
  /** Stops the reads and writes; throws `ABORTED` (nothing is committed). */
  readonly signal?: AbortSignal;
}

/** The largest ranged read of {@link copyCheckpoint} (bytes): items larger than this are read in pieces. */
export const COPY_PIECE_BYTES = 8 * 1024 * 1024;

/** One item of a data file: where it is stored, and its entry's fqn (for messages). */
interface FileItem {
  readonly info: StorageInfo;
  readonly fqn: string;
}

/** Checks an item's bytes: its CRC when it has one (PyTorch items carry their own zip CRCs). */
function intact(info: StorageInfo, bytes: Uint8Array): boolean {
  const sum = itemChecksum(info);
  return (
    bytes.byteLength === info.length &&
    (sum === undefined || computeChecksum(sum.algorithm, bytes) === sum.value)
  );
}

/** One ranged read of a copy: bytes `[offset, offset + length)`, part of item `item` (or of a gap). */
interface Piece {
  readonly offset: number;
  readonly length: number;
  readonly item: FileItem | undefined;
  /** The item's last piece: its CRC is checked after it. */
  readonly last: boolean;
}

/** A file's reads, in file order: each item (and each gap between items) cut into pieces. */
function piecesOf(items: readonly FileItem[]): Piece[] {
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
  return pieces;
}

/**
 * Copies a committed checkpoint between any two registered backends (folders, `s3://`, …) in any
 * direction: every data file item by item, as ranged reads of at most {@link COPY_PIECE_BYTES}
 * within one budget of `concurrency` reads in flight (each retried by the backend: S3 GETs resume
 * from the first missing byte), read ahead of the writes in order (`prefetchInOrder`), each item
 * verified (length and CRC) on arrival before its last piece is written; the destination's
 * `.metadata` is written last (through a tmp and a rename), so a copy killed at any point leaves
 * nothing loadable there. Incremental: a destination file whose items all verify is not copied again.
 *
 * @param src - the source checkpoint.
 * @param dst - the destination folder or prefix (of a writable backend).
 * @param options - see {@link CopyOptions}.
 * @throws {@link CheckpointError} `INCOMPLETE_CHECKPOINT` for a source without `.metadata`;
 * `CHECKSUM_MISMATCH` naming the fqn when a source item is damaged (nothing is committed);
 * `INVALID_ARGUMENT` for a read-only destination; `ABORTED`.
 */
export async function copyCheckpoint(
  src: string,
  dst: string,
  options: CopyOptions = {},
): Promise<CopyReport> {
  const { signal } = options;
  const from = locate(src, options.cacheDir !== undefined ? { cacheDir: options.cacheDir } : {});
  const to = locate(dst, { writable: true });
  const metadataBytes = await readWholeFile(from.fs, from.fs.concatPath(from.root, METADATA_FILE), {
    access: "random",
  });
  const md = decodeCheckpointMetadata(metadataBytes);
  const byFile = new Map<string, FileItem[]>();
  for (const [key, info] of md.storageData) {
    const list = byFile.get(info.relativePath) ?? [];
    list.push({ info, fqn: key.split("\u0000")[0]! });
    byFile.set(info.relativePath, list);
  }
  const sizeOf = (items: readonly FileItem[]) =>
    items.reduce((n, { info }) => Math.max(n, info.offset + info.length), 0);
  const total = [...byFile.values()].reduce((n, items) => n + sizeOf(items), 0);
  let done = 0;
  const progress = (n: number) => {
    done += n;
    options.onProgress?.(done, total);
  };
  const copied: string[] = [];
  const skipped: string[] = [];
  let bytes = 0;
  const budget = options.concurrency ?? 8;
  const reads = pLimit(budget);
  const readAll = async (fs: FileSystemBase, path: string, items: readonly FileItem[]) => {
    const stream = await fs.createStream(path, "rb", { access: "random" });
    try {
      return await Promise.all(
        items.map(({ info }) => reads(() => stream.read(info.offset, info.length, signal))),
      );
    } finally {
      await stream.close();
    }
  };
  const copyFile = async (file: string, items: FileItem[]) => {
    throwIfAborted(signal);
    items.sort((a, b) => a.info.offset - b.info.offset);
    const target = to.fs.concatPath(to.root, file);
    // Incremental: the destination file already holds every item intact.
    const existing = await readAll(to.fs, target, items).catch(() => undefined);
    if (existing?.every((b, i) => intact(items[i]!.info, b))) {
      skipped.push(file);
      progress(sizeOf(items));
      return;
    }
    const source = await from.fs.createStream(from.fs.concatPath(from.root, file), "rb", {
      access: "random",
    });
    const out = await to.fs.createStream(target, "wb");
    const pieces = piecesOf(items);
    try {
      let crc = 0;
      let itemBytes = 0;
      let at = 0;
      // Reads run ahead of the writes by at most `budget` pieces of this file (backpressure).
      for await (const data of prefetchInOrder(
        pieces,
        (p) => reads(() => source.read(p.offset, p.length, signal)),
        budget,
      )) {
        throwIfAborted(signal);
        const piece = pieces[at++]!;
        if (piece.item) {
          const sum = itemChecksum(piece.item.info);
          if (sum) crc = computeChecksum(sum.algorithm, data, itemBytes === 0 ? undefined : crc);
          itemBytes += data.byteLength;
          if (piece.last) {
            const { info, fqn } = piece.item;
            if (itemBytes !== info.length || (sum !== undefined && crc !== sum.value)) {
              throw new CheckpointError(
                "CHECKSUM_MISMATCH",
                `Expected "${fqn}" in ${src}/${file} @ ${info.offset}+${info.length} to match its ${sum ? checksumName(sum.algorithm) : "length"}; it does not: not copied`,
              );
            }
            crc = 0;
            itemBytes = 0;
          }
          bytes += data.byteLength;
        }
        progress(data.byteLength);
        await out.write(data);
      }
      await out.sync();
      await out.close();
      copied.push(file);
    } catch (error) {
      await out.abort(error);
      throw error;
    } finally {
      await source.close();
    }
  };
  const files = pLimit(budget);
  await Promise.all([...byFile].map(([file, items]) => files(() => copyFile(file, items))));
  throwIfAborted(signal);
  // Commit last: the metadata as it is (same format, same relative paths).
  const tmp = to.fs.concatPath(to.root, metadataTmpFile("cp"));
  await writeWholeFile(to.fs, tmp, [metadataBytes]);
  await to.fs.rename(tmp, to.fs.concatPath(to.root, METADATA_FILE));
  return { copied, skipped, bytes };
}
