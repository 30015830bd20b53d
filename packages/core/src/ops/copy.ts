import pLimit from "p-limit";
import { CheckpointError, NotFoundError, throwIfAborted } from "../errors.js";
import { decodeCheckpointMetadata } from "../formats/checkpoint-metadata.js";
import { itemChecksum } from "../formats/checksum.js";
import { encodeMetadata } from "../formats/metadata-codec.js";
import { readSafetensorsFolder } from "../formats/safetensors/folder-reader.js";
import { validateMetadata } from "../formats/validate-metadata.js";
import type { Metadata, StorageInfo } from "../plan/metadata.js";
import { METADATA_FILE, metadataTmpFile } from "../storage/layout.js";
import { checkpointFolder } from "../storage/read-checkpoint-metadata.js";
import { referencedCheckpoints, siblingCheckpointId } from "../storage/references.js";
import { writeWholeFile } from "../storage/write-whole-file.js";
import { type CopyRun, copyFile, type FileItem, type FileToCopy } from "./copy-files.js";
import { type CopyPlan, type CopyVerification, planSafetensorsCopy } from "./copy-safetensors.js";
import { committedMetadata, type Located, locate } from "./locate.js";
import type { OperationProgress } from "./progress.js";

export { COPY_PIECE_BYTES } from "./copy-files.js";
export { type CopyVerification, REPOSITORY_FILE_PATTERN } from "./copy-safetensors.js";

/** What {@link copyCheckpoint} did. */
export interface CopyReport {
  /** Data files copied (DCP's data files, a safetensors repository's shards). */
  readonly copied: string[];
  /** Data files skipped because the destination already held them intact. */
  readonly skipped: string[];
  /** Item (tensor) bytes copied. */
  readonly bytes: number;
  /** What the source was: a DCP checkpoint (`.metadata` committed last) or a safetensors repository (its index committed last). */
  readonly layout: "dcp" | "safetensors";
  /** The other files written, in order, the commit last: a repository's config and tokenizer files, the sidecar, the index; `.metadata`. */
  readonly files: string[];
  /** How the data files were verified (see {@link CopyVerification}). */
  readonly verifiedBy: CopyVerification;
  /**
   * For an incremental source: the base checkpoints (names of the source's siblings) whose
   * referenced files were copied in — or, with `keepRefs`, that the copy still references. Absent
   * for a self-contained source.
   */
  readonly bases?: readonly string[];
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
   * Called as bytes are copied (or found intact and skipped), with the files' bytes done
   * so far and in all.
   */
  readonly onProgress?: OperationProgress;
  /**
   * A read cache folder for the source, for a backend that has one (S3's `S3ReadCache`): bytes
   * this machine fetched before are read from disk. @default no cache
   */
  readonly cacheDir?: string;
  /**
   * For an incremental source (items referencing its bases' files): keep the references instead of
   * copying the referenced bytes in. Requires each base to have been copied beside the destination
   * first, under the same name (`dcp cp run/step-100 copy/step-100` before `dcp cp --keep-refs
   * run/step-110 copy/step-110`), holding every referenced item as its own (same file, offset,
   * length and checksum). @default false: the copy is self-contained
   */
  readonly keepRefs?: boolean;
  /** Stops the reads and writes; throws `ABORTED` (nothing is committed). */
  readonly signal?: AbortSignal;
}

/** The files of items, by name: each with its items and its size (the end of its last item). */
function filesOf(items: Iterable<[key: string, info: StorageInfo]>, from?: Located): FileToCopy[] {
  const byFile = new Map<string, FileItem[]>();
  for (const [key, info] of items) {
    const list = byFile.get(info.relativePath) ?? [];
    list.push({ info, fqn: key.split("\u0000")[0]! });
    byFile.set(info.relativePath, list);
  }
  return [...byFile].map(
    ([file, list]): FileToCopy => ({
      file,
      items: list,
      size: list.reduce((n, { info }) => Math.max(n, info.offset + info.length), 0),
      ...(from ? { from } : {}),
    }),
  );
}

/** Whether an item is stored as `info` (same file, range and checksum). */
function sameItem(a: StorageInfo | undefined, info: StorageInfo): boolean {
  const x = a && itemChecksum(a);
  const y = itemChecksum(info);
  return (
    a !== undefined &&
    a.baseCheckpoint === undefined &&
    a.relativePath === info.relativePath &&
    a.offset === info.offset &&
    a.length === info.length &&
    x?.algorithm === y?.algorithm &&
    x?.value === y?.value
  );
}

/**
 * The copy of a DCP checkpoint: its data files item by item, its `.metadata` last — as it is, or
 * for an incremental checkpoint copied self-contained, with the references rewritten to the copy's
 * own files (the bases' files copied in beside its own; the items' bytes and checksums unchanged).
 */
async function planDcpCopy(
  metadataBytes: Uint8Array,
  src: string,
  dst: string,
  options: CopyOptions,
): Promise<CopyPlan> {
  const md = decodeCheckpointMetadata(metadataBytes);
  let unchecked = false;
  for (const info of md.storageData.values()) unchecked ||= itemChecksum(info) === undefined;
  const verifiedBy = unchecked ? "lengths" : "checksums";
  const bases = referencedCheckpoints(md);
  if (bases.length === 0)
    return {
      layout: "dcp",
      data: filesOf(md.storageData),
      extras: [],
      commit: [{ name: METADATA_FILE, bytes: metadataBytes }],
      verifiedBy,
    };
  const own = [...md.storageData].filter(([, i]) => i.baseCheckpoint === undefined);
  if (options.keepRefs) {
    // Each base must already lie beside the destination, holding every referenced item as its own.
    for (const base of bases) {
      const there = siblingCheckpointId(dst, base);
      const theirs = await committedMetadata(there, options.signal);
      const missing = [...md.storageData].find(
        ([key, i]) => i.baseCheckpoint === base && !(theirs && sameItem(theirs.storageData.get(key), i)),
      );
      if (missing)
        throw new CheckpointError(
          "INVALID_ARGUMENT",
          `Expected the base ${base} to be copied to ${there} first (--keep-refs keeps references to it), ${
            theirs
              ? `but it does not hold "${missing[0].split("\u0000")[0]}" as ${src}'s base does`
              : "found no committed checkpoint there"
          }: copy it first, or copy without --keep-refs for a self-contained copy`,
        );
    }
    return {
      layout: "dcp",
      data: filesOf(own),
      extras: [],
      commit: [{ name: METADATA_FILE, bytes: metadataBytes }],
      verifiedBy,
      bases,
    };
  }
  const data = filesOf(own);
  for (const base of bases) {
    const at = locate(
      siblingCheckpointId(src, base),
      options.cacheDir !== undefined ? { cacheDir: options.cacheDir } : {},
    );
    data.push(
      ...filesOf(
        [...md.storageData].filter(([, i]) => i.baseCheckpoint === base),
        at,
      ),
    );
  }
  const names = new Set<string>();
  for (const f of data) {
    if (names.has(f.file))
      throw new CheckpointError(
        "INVALID_ARGUMENT",
        `Expected the files of ${src} and its bases (${bases.join(", ")}) to have distinct names for a self-contained copy, got ${f.file} twice: copy with --keep-refs`,
      );
    names.add(f.file);
  }
  const rewritten: Metadata = {
    ...md,
    storageData: new Map(
      [...md.storageData].map(([key, { baseCheckpoint: _, ...info }]): [string, StorageInfo] => [key, info]),
    ),
  };
  return {
    layout: "dcp",
    data,
    extras: [],
    commit: [{ name: METADATA_FILE, bytes: encodeMetadata(rewritten) }],
    verifiedBy,
    bases,
  } as CopyPlan;
}

/**
 * Copies a committed checkpoint between any two registered backends (folders, `s3://`, …; from
 * `http(s)://` and `hf://` once `@dcpjs/http` is imported) in any direction: every data file item
 * by item, as ranged reads of at most {@link COPY_PIECE_BYTES} within one budget of `concurrency`
 * reads in flight (each retried by the backend: S3 GETs resume from the first missing byte), read
 * ahead of the writes in order (`prefetchInOrder`), each item verified (length and CRC) on arrival
 * before its last piece is written. Incremental: a destination file whose items all verify is not
 * copied again.
 *
 * A DCP checkpoint (dcpjs's or PyTorch's `.metadata`) is committed by its `.metadata`, written
 * last (through a tmp and a rename), so a copy killed at any point leaves nothing loadable there.
 * An incremental checkpoint (items referencing its bases' files, `StorageInfo.baseCheckpoint`) is
 * copied self-contained: the referenced files are read from the bases (siblings of `src`) and
 * written beside its own, and its `.metadata` is written with the references dropped (every
 * item's file, range, bytes and checksum unchanged); with `keepRefs` the references are kept and
 * only its own files copied, once each base is found copied beside `dst` (see {@link CopyOptions.keepRefs}).
 * A safetensors repository (no `.metadata`; `model.safetensors.index.json` or `*.safetensors`, as
 * DCP's `HuggingFaceStorageReader` reads it) is copied as one: every header parsed and each
 * file's size checked against header + data, every tensor checked against the CRC-32C sidecar
 * `model.safetensors.crc32c.json` when there is one, the repository's small files copied when the
 * source lists them (see `planSafetensorsCopy`), then the sidecar and the index, written last (no
 * `.metadata` is invented). A repository copy that fails removes the files it wrote (a folder of
 * shards without its index would be read by listing); one killed before its index leaves shards
 * that a listing reader would find, so take a destination without the index as incomplete.
 *
 * The first file that fails stops the others; they settle before its error is thrown.
 *
 * @param src - the source checkpoint or repository.
 * @param dst - the destination folder or prefix (of a writable backend).
 * @param options - see {@link CopyOptions}.
 * @returns what was copied, and how it was verified.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` with `keepRefs` when a base is not copied
 * beside `dst`, or without it when a base's file has the name of another copied file;
 * `INCOMPLETE_CHECKPOINT` for a source with neither `.metadata`
 * nor safetensors files; `CHECKSUM_MISMATCH` naming the fqn and file when a source item is damaged
 * (nothing is committed); `MALFORMED_METADATA` naming the file for a safetensors file whose header
 * or size is wrong (a truncated shard); `INVALID_ARGUMENT` for a read-only destination; `ABORTED`.
 */
export async function copyCheckpoint(
  src: string,
  dst: string,
  options: CopyOptions = {},
): Promise<CopyReport> {
  const { signal } = options;
  const from = locate(src, options.cacheDir !== undefined ? { cacheDir: options.cacheDir } : {});
  const to = locate(dst, { writable: true });
  const folder = checkpointFolder(from.fs, from.root, signal);
  const metadataBytes = await folder.readFile(METADATA_FILE, { random: true });
  let plan: CopyPlan;
  if (metadataBytes !== undefined) plan = await planDcpCopy(metadataBytes, src, dst, options);
  else {
    const found = await readSafetensorsFolder(folder);
    if (found === undefined)
      throw new CheckpointError(
        "INCOMPLETE_CHECKPOINT",
        `Expected a committed checkpoint at ${src} (a ${METADATA_FILE} file, or a safetensors repository), found none: the save did not complete, or the path is wrong`,
        { cause: new NotFoundError(from.fs.concatPath(from.root, METADATA_FILE)) },
      );
    const metadata = validateMetadata(found, { what: "safetensors folder" });
    plan = await planSafetensorsCopy(from, folder, metadata, signal);
  }
  const all = [...plan.data, ...plan.extras];
  const total = all.reduce((n, f) => n + f.size, 0);
  let done = 0;
  const budget = options.concurrency ?? 8;
  // The first failure stops the other files' copies (they settle before this throws).
  const stop = new AbortController();
  const run: CopyRun = {
    src,
    from,
    to,
    reads: pLimit(budget),
    readAhead: budget,
    progress: (n) => {
      done += n;
      options.onProgress?.(done, total);
    },
    signal: signal ? AbortSignal.any([signal, stop.signal]) : stop.signal,
  };
  const copied: string[] = [];
  const skipped: string[] = [];
  const files: string[] = [];
  let bytes = 0;
  let failure: { error: unknown } | undefined;
  const perFile = pLimit(budget);
  const each = (f: FileToCopy, data: boolean) =>
    perFile(async () => {
      if (failure) return;
      try {
        const r = await copyFile(run, f);
        if (!data) files.push(f.file);
        else if (r.copied) {
          copied.push(f.file);
          bytes += r.itemBytes;
        } else skipped.push(f.file);
      } catch (error) {
        failure ??= { error };
        stop.abort(error);
      }
    });
  await Promise.all([...plan.data.map((f) => each(f, true)), ...plan.extras.map((f) => each(f, false))]);
  if (failure) {
    // A repository without its index is read by listing its *.safetensors: what this copy wrote goes.
    if (plan.layout === "safetensors")
      await Promise.all(
        [...copied, ...files].map((f) => to.fs.rmFile(to.fs.concatPath(to.root, f)).catch(() => {})),
      );
    throw failure.error;
  }
  // Commit last: each file through a tmp and a rename, as it is (same relative paths).
  for (const { name, bytes: content } of plan.commit) {
    throwIfAborted(signal);
    const tmp = to.fs.concatPath(to.root, name === METADATA_FILE ? metadataTmpFile("cp") : `${name}.cp.tmp`);
    await writeWholeFile(to.fs, tmp, [content], signal ? { signal } : {});
    await to.fs.rename(tmp, to.fs.concatPath(to.root, name));
    files.push(name);
  }
  return {
    copied,
    skipped,
    bytes,
    layout: plan.layout,
    files,
    verifiedBy: plan.verifiedBy,
    ...(plan.bases ? { bases: plan.bases } : {}),
  };
}
