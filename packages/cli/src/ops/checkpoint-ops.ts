import {
  CheckpointError,
  type CheckpointListing,
  listCheckpoints as coreListCheckpoints,
  createStorageReader,
  createStorageWriter,
  type FileSystemWriter,
  type Metadata,
  NotFoundError,
} from "@dcpjs/core";
import {
  checksumName,
  computeChecksum,
  decodeCheckpointMetadata,
  type FileSystemBase,
  isDamagedMetadataError,
  isDataFile,
  isMetadataTmpFile,
  isSaveLeaseFile,
  itemChecksum,
  METADATA_FILE,
  metadataTmpFile,
  readWholeFile,
  SAVE_LEASE_EXPIRY_MS,
  type StorageInfo,
  saveTagOf,
  writeWholeFile,
} from "@dcpjs/core/extend";
import pLimit from "p-limit";

/**
 * A backend and the normalised path of a folder or `s3://` prefix on it; an `s3://` one reads
 * through the read cache in `cacheDir` when given.
 */
async function locate(path: string, cacheDir?: string): Promise<{ fs: FileSystemBase; root: string }> {
  const writer = (await createStorageWriter(path)) as FileSystemWriter;
  if (cacheDir !== undefined && path.startsWith("s3://")) {
    const { S3FileSystem, S3ReadCache } = await import("@dcpjs/s3");
    return {
      fs: new S3FileSystem({ readCache: new S3ReadCache({ dir: cacheDir }) }),
      root: writer.checkpointPath,
    };
  }
  return { fs: writer.fs, root: writer.checkpointPath };
}

/** The committed metadata at `root`, or undefined when there is none (incomplete, or not a checkpoint). */
async function committed(path: string): Promise<Metadata | undefined> {
  try {
    return await (await createStorageReader(path)).readMetadata();
  } catch (error) {
    if (error instanceof CheckpointError && error.code === "INCOMPLETE_CHECKPOINT") return undefined;
    throw error;
  }
}

export type { CheckpointListing } from "@dcpjs/core";

/**
 * The checkpoints at `path` and directly under it (a run's folder of step checkpoints), committed
 * and incomplete, newest first: `@dcpjs/core`'s {@link coreListCheckpoints} one level deep, as
 * `gc --keep-last` sees a run.
 *
 * @param path - a folder or `s3://` prefix.
 * @throws as `@dcpjs/core`'s `listCheckpoints`.
 */
export function listCheckpoints(path: string): Promise<CheckpointListing[]> {
  return coreListCheckpoints(path, { includeIncomplete: true });
}

/** What {@link removeCheckpoint} and {@link collectGarbage} removed (or, dry, would remove). */
export interface RemovalReport {
  /** The files removed (names in the checkpoint), or with `keepLast` the checkpoints removed whole (ids). */
  readonly removed: string[];
  /** Bytes removed (of the files as listed, or of the checkpoints' data files). */
  readonly bytes: number;
  /** Incomplete multipart uploads aborted (S3). */
  readonly uploads: number;
}

/**
 * Removes a checkpoint safely: its `.metadata` first — so no reader ever finds half of it — then
 * the data files it references, then leftovers of other saves (`__*.distcp`, `.metadata.*.tmp`)
 * and save leases (`.save.*.lease`), so that the folder is left empty of dcpjs files.
 *
 * @param path - the checkpoint.
 * @param options - `force`: remove what is there even without a committed checkpoint, or with a
 * damaged one (its `.metadata` does not read: removed with every data file).
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when `path` holds no committed checkpoint and
 * `force` is not set; the damaged metadata's code (`MALFORMED_METADATA`…) when it does not read
 * and `force` is not set; backend errors.
 */
export async function removeCheckpoint(
  path: string,
  options: { readonly force?: boolean } = {},
): Promise<RemovalReport> {
  const { fs, root } = await locate(path);
  let md: Metadata | undefined;
  let damaged = false;
  try {
    md = await committed(path);
  } catch (error) {
    if (!isDamagedMetadataError(error)) throw error;
    if (!options.force)
      throw new CheckpointError(
        error.code,
        `${error.message} (use --force to remove the damaged checkpoint at ${path})`,
        { cause: error },
      );
    damaged = true;
  }
  if (!md && !damaged && !options.force)
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected a committed checkpoint at ${path}, found none (use --force to remove what is there)`,
    );
  const entries = fs.list ? await fs.list(root) : [];
  const removed: string[] = [];
  let bytes = 0;
  const rm = async (name: string, size: number) => {
    try {
      await fs.rmFile(fs.concatPath(root, name));
      removed.push(name);
      bytes += size;
    } catch (error) {
      if (!(error instanceof NotFoundError)) throw error;
    }
  };
  if (md || damaged) await rm(METADATA_FILE, entries.find((e) => e.name === METADATA_FILE)?.size ?? 0);
  const referenced = new Map<string, number>();
  for (const i of md?.storageData.values() ?? [])
    referenced.set(i.relativePath, Math.max(referenced.get(i.relativePath) ?? 0, i.offset + i.length));
  for (const [name, size] of referenced) await rm(name, size);
  for (const e of entries)
    if (
      !e.folder &&
      !referenced.has(e.name) &&
      (isDataFile(e.name) || isMetadataTmpFile(e.name) || isSaveLeaseFile(e.name))
    )
      await rm(e.name, e.size);
  return { removed, bytes, uploads: 0 };
}

/** Options of {@link collectGarbage}. */
export interface GarbageOptions {
  /** Only report. @default false */
  readonly dryRun?: boolean;
  /**
   * Leave files younger than this alone (ms): leftovers of a save whose lease is gone. Files of a
   * save in flight are kept whatever their age, by its lease ({@link SAVE_LEASE_EXPIRY_MS}).
   * @default 3600000 (1 hour)
   */
  readonly graceMs?: number;
  /**
   * Treat `path` as a run prefix: keep its newest N committed checkpoints (N ≥ 1: the newest is
   * never removed), remove the older ones.
   */
  readonly keepLast?: number;
}

/**
 * The save tags whose lease is live in a folder: listed after the files they protect were, so that
 * a file seen there whose save holds a lease is seen with it (a save writes its lease before its
 * first data file and removes it only after its commit or failure).
 */
async function liveLeases(fs: FileSystemBase, root: string, now: number): Promise<Set<string>> {
  const live = new Set<string>();
  for (const e of fs.list ? await fs.list(root) : []) {
    const tag = isSaveLeaseFile(e.name) ? saveTagOf(e.name) : undefined;
    if (tag && now - e.modifiedMs < SAVE_LEASE_EXPIRY_MS) live.add(tag);
  }
  return live;
}

/**
 * Finds and removes what crashed or superseded saves left in a checkpoint folder: data files that
 * no committed `.metadata` references, `.metadata.*.tmp` files, expired save leases, and (S3)
 * incomplete multipart uploads under the prefix — each only when older than the grace period and
 * not of a save in flight. A save in flight holds a lease (`.save.{saveTag}.lease`, written
 * before its first data file, renewed while it writes, removed after its commit): every file and
 * upload of its tag is kept, whatever the grace, while the lease is younger than
 * {@link SAVE_LEASE_EXPIRY_MS}. The folder is listed first, its leases and `.metadata` read after,
 * so a file a save commits while gc runs is seen referenced or leased, never as garbage. With
 * `keepLast`, `path` is a run prefix whose older committed checkpoints are removed whole (and
 * every checkpoint folder is collected, its expired leases too); a checkpoint a save is writing is
 * left alone, and so is a damaged one (its `.metadata` does not read).
 *
 * @param path - a checkpoint folder, or with `keepLast` a run prefix.
 * @param options - see {@link GarbageOptions}.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when `keepLast` is not an integer ≥ 1 or
 * `graceMs` not a number ≥ 0; backend errors; a malformed `.metadata` (nothing is removed from that
 * folder).
 */
export async function collectGarbage(path: string, options: GarbageOptions = {}): Promise<RemovalReport> {
  const grace = options.graceMs ?? 3_600_000;
  if (!(grace >= 0))
    throw new CheckpointError("INVALID_ARGUMENT", `Expected graceMs to be a number ≥ 0, got ${grace}`);
  const now = Date.now();
  const removed: string[] = [];
  let bytes = 0;
  let uploads = 0;
  if (options.keepLast !== undefined) {
    if (!Number.isInteger(options.keepLast) || options.keepLast < 1)
      throw new CheckpointError(
        "INVALID_ARGUMENT",
        `Expected keepLast to be an integer ≥ 1 (the newest committed checkpoint is always kept), got ${options.keepLast}`,
      );
    const found = await listCheckpoints(path);
    const keep = new Set(
      found
        .filter((c) => c.state === "committed")
        .slice(0, options.keepLast)
        .map((c) => c.id),
    );
    const { fs } = await locate(path);
    for (const c of found) {
      if (keep.has(c.id)) {
        const { keepLast: _, ...inside } = options;
        const r = await collectGarbage(c.id, inside);
        removed.push(...r.removed);
        bytes += r.bytes;
        uploads += r.uploads;
        continue;
      }
      // A damaged checkpoint is left for a person to look at (`dcp rm --force` removes it).
      if (c.state === "damaged") continue;
      if (c.state !== "committed" && now - c.modifiedMs < grace) continue;
      // A save writing there (a new checkpoint, or an overwrite of an old one) keeps it whole; an
      // incomplete one that has committed since it was listed is newer than the kept ones.
      const root = (await locate(c.id)).root;
      if ((await liveLeases(fs, root, now)).size > 0) continue;
      if (c.state !== "committed" && (await committed(c.id))) continue;
      if (!options.dryRun) await removeCheckpoint(c.id, { force: true });
      removed.push(c.id);
      bytes += c.bytes;
    }
    return { removed, bytes, uploads };
  }
  const { fs, root } = await locate(path);
  // Order matters: files first, then leases, then .metadata (see above).
  const entries = fs.list ? await fs.list(root) : [];
  const leased = await liveLeases(fs, root, now);
  const md = await committed(path);
  const referenced = new Set([...(md?.storageData.values() ?? [])].map((i: StorageInfo) => i.relativePath));
  const inFlight = (name: string) => {
    const tag = saveTagOf(name);
    return tag !== undefined && leased.has(tag);
  };
  for (const e of entries) {
    if (e.folder || referenced.has(e.name)) continue;
    const lease = isSaveLeaseFile(e.name);
    if (!(lease || isDataFile(e.name) || isMetadataTmpFile(e.name)) || inFlight(e.name)) continue;
    // An expired lease is a dead save's; other files may still be written by a save without one.
    if (lease ? now - e.modifiedMs < SAVE_LEASE_EXPIRY_MS : grace > 0 && now - e.modifiedMs < grace) continue;
    if (!options.dryRun) {
      try {
        await fs.rmFile(fs.concatPath(root, e.name));
      } catch (error) {
        if (error instanceof NotFoundError) continue; // removed meanwhile (a commit removing what it replaced)
        throw error;
      }
    }
    removed.push(e.name);
    bytes += e.size;
  }
  if (path.startsWith("s3://")) {
    const { abortIncompleteUploads } = await import("@dcpjs/s3");
    if (!options.dryRun)
      uploads = (
        await abortIncompleteUploads(path, {
          startedBefore: new Date(now - grace),
          // Leases read again after each page of uploads is listed: a save leases before it uploads.
          keep: async (keys) => {
            const live = await liveLeases(fs, root, Date.now());
            return new Set(keys.filter((k) => live.has(saveTagOf(k) ?? "")));
          },
        })
      ).length;
  }
  return { removed, bytes, uploads };
}

/** What {@link copyCheckpoint} did. */
export interface CopyReport {
  /** Data files copied, and those skipped because the destination already held them intact. */
  readonly copied: string[];
  readonly skipped: string[];
  /** Bytes copied. */
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
  /** Called with bytes as they are copied (or skipped). */
  readonly onProgress?: (bytes: number) => void;
  /**
   * A read cache folder for an `s3://` source ({@link S3ReadCache}): bytes this machine fetched
   * before are read from disk. @default no cache
   */
  readonly cacheDir?: string;
}

/** The largest ranged read of `dcp cp` (bytes): items larger than this are read in pieces. */
export const COPY_PIECE_BYTES = 8 * 1024 * 1024;

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
  readonly item: { info: StorageInfo; fqn: string } | undefined;
  /** The item's last piece: its CRC is checked after it. */
  readonly last: boolean;
}

/** A file's reads, in file order: each item (and each gap between items) cut into pieces. */
function piecesOf(items: readonly { info: StorageInfo; fqn: string }[]): Piece[] {
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
 * Copies a committed checkpoint between folders and S3 in any direction: every data file item by
 * item, as ranged reads of at most {@link COPY_PIECE_BYTES} within one budget of `concurrency`
 * reads in flight (each retried by the backend: S3 GETs resume from the first missing byte), each
 * item verified (length and CRC) on arrival before its last piece is written; the
 * destination's `.metadata` is written last (through a tmp and a rename), so a copy killed at any
 * point leaves nothing loadable there. Incremental: a destination file whose items all verify is
 * not copied again.
 *
 * @param src - the source checkpoint.
 * @param dst - the destination folder or `s3://` prefix.
 * @param options - see {@link CopyOptions}.
 * @throws {@link CheckpointError} `INCOMPLETE_CHECKPOINT` for a source without `.metadata`;
 * `CHECKSUM_MISMATCH` naming the fqn when a source item is damaged (nothing is committed).
 */
export async function copyCheckpoint(
  src: string,
  dst: string,
  options: CopyOptions = {},
): Promise<CopyReport> {
  const from = await locate(src, options.cacheDir);
  const to = await locate(dst);
  const metadataBytes = await readWholeFile(from.fs, from.fs.concatPath(from.root, METADATA_FILE), {
    access: "random",
  });
  const md = decodeCheckpointMetadata(metadataBytes);
  const byFile = new Map<string, { info: StorageInfo; fqn: string }[]>();
  for (const [key, info] of md.storageData) {
    const list = byFile.get(info.relativePath) ?? [];
    list.push({ info, fqn: key.split("\u0000")[0]! });
    byFile.set(info.relativePath, list);
  }
  const copied: string[] = [];
  const skipped: string[] = [];
  let bytes = 0;
  const budget = options.concurrency ?? 8;
  const reads = pLimit(budget);
  const readAll = async (fs: FileSystemBase, path: string, items: { info: StorageInfo }[]) => {
    const stream = await fs.createStream(path, "rb", { access: "random" });
    try {
      return await Promise.all(items.map(({ info }) => reads(() => stream.read(info.offset, info.length))));
    } finally {
      await stream.close();
    }
  };
  const copyFile = async (file: string, items: { info: StorageInfo; fqn: string }[]) => {
    items.sort((a, b) => a.info.offset - b.info.offset);
    const size = items.reduce((n, { info }) => Math.max(n, info.offset + info.length), 0);
    const target = to.fs.concatPath(to.root, file);
    // Incremental: the destination file already holds every item intact.
    const existing = await readAll(to.fs, target, items).catch(() => undefined);
    if (existing?.every((b, i) => intact(items[i]!.info, b))) {
      skipped.push(file);
      options.onProgress?.(size);
      return;
    }
    const source = await from.fs.createStream(from.fs.concatPath(from.root, file), "rb", {
      access: "random",
    });
    const out = await to.fs.createStream(target, "wb");
    const pieces = piecesOf(items);
    // Reads run ahead of the writes by at most `budget` pieces of this file (backpressure).
    const pending: Promise<Uint8Array>[] = [];
    let next = 0;
    const refill = () => {
      while (next < pieces.length && pending.length < budget) {
        const p = pieces[next++]!;
        const read = reads(() => source.read(p.offset, p.length));
        read.catch(() => {}); // settled in order below; a failure is thrown there
        pending.push(read);
      }
    };
    try {
      let crc = 0;
      let itemBytes = 0;
      for (const piece of pieces) {
        refill();
        const data = await pending.shift()!;
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
          options.onProgress?.(data.byteLength);
        }
        await out.write(data);
      }
      await out.sync();
      await out.close();
      copied.push(file);
    } catch (error) {
      await out.abort(error);
      throw error;
    } finally {
      await Promise.allSettled(pending);
      await source.close();
    }
  };
  const files = pLimit(budget);
  await Promise.all([...byFile].map(([file, items]) => files(() => copyFile(file, items))));
  // Commit last: the metadata as it is (same format, same relative paths).
  const tmp = to.fs.concatPath(to.root, metadataTmpFile("cp"));
  await writeWholeFile(to.fs, tmp, [metadataBytes]);
  await to.fs.rename(tmp, to.fs.concatPath(to.root, METADATA_FILE));
  return { copied, skipped, bytes };
}
