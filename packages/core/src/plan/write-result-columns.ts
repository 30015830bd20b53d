import { CheckpointError } from "../errors.js";
import type { ChecksumAlgorithm } from "../formats/checksum.js";
import { isUnchangedLazyArray, lazyArray } from "./lazy-array.js";
import type { StorageInfo, WriteItem, WriteResult } from "./metadata.js";
import type { SavePlanColumns } from "./save-plan-columns.js";

/** Bytes of one content hash (XXH3-128) in {@link WriteResultColumns.hashes}. */
export const RESULT_HASH_BYTES = 16;

/**
 * A rank's write results as typed columns: the engine's working form of the `WriteResult[]` a
 * writer returns for a plan over columns (DCP's `WriteResult`s: where each item's bytes went).
 * Per result: its item's position in the plan, its file (an id into `files`), offset, length,
 * CRC and content hash; a result the columns cannot hold (running checksums, another item
 * format, a reference to a base) is kept whole in `extra`.
 */
export interface WriteResultColumns {
  /** The finished plan whose items these results are. */
  readonly plan: SavePlanColumns;
  /** Per result: its item's position in `plan`. */
  readonly items: Int32Array;
  /** The data files, each once. */
  readonly files: readonly string[];
  /** Per result: its file's position in `files`. */
  readonly file: Uint32Array;
  /** Per result: where its bytes start in its file (bytes). */
  readonly offset: Float64Array;
  /** Per result: its stored length (bytes). */
  readonly length: Float64Array;
  /** The CRC of every result in the columns. */
  readonly algorithm: ChecksumAlgorithm;
  /** Per result: its CRC (unsigned). */
  readonly checksums: Uint32Array;
  /**
   * Per result: its content hash (XXH3-128), {@link RESULT_HASH_BYTES} bytes each; zeros where it
   * has none (empty when none has one).
   */
  readonly hashes: Uint8Array;
  /** Per result: 1 where it has a content hash. */
  readonly hasHash: Uint8Array;
  /** Results the columns do not hold, by position: their slots in the columns are unused. */
  readonly extra: ReadonlyMap<number, WriteResult>;
}

const HEX = "0123456789abcdef";

/**
 * Writes a content hash of 32 lowercase hex digits as 16 bytes.
 * @param hex - the digits (read from `at`).
 * @param at - where they start in `hex`.
 * @param to - the bytes.
 * @param toAt - where to put them.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when a digit is not lowercase hex.
 */
export function hexToHash(hex: string, at: number, to: Uint8Array, toAt: number): void {
  for (let i = 0; i < RESULT_HASH_BYTES; i++) {
    const hi = hexDigit(hex.charCodeAt(at + 2 * i));
    const lo = hexDigit(hex.charCodeAt(at + 2 * i + 1));
    if ((hi | lo) < 0)
      throw new CheckpointError(
        "INVALID_ARGUMENT",
        `Expected a content hash of 32 lowercase hex digits, got ${JSON.stringify(hex.slice(at, at + 32))}`,
      );
    to[toAt + i] = (hi << 4) | lo;
  }
}

function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

/**
 * Content hash bytes as 32 lowercase hex digits.
 * @param bytes - the hashes.
 * @param at - where the hash starts.
 */
export function hashToHex(bytes: Uint8Array, at: number): string {
  let s = "";
  for (let i = 0; i < RESULT_HASH_BYTES; i++) {
    const b = bytes[at + i]!;
    s += HEX[b >> 4]! + HEX[b & 15]!;
  }
  return s;
}

/**
 * Fills a {@link WriteResultColumns} as a writer stores items: slot by slot, in any order (a slot
 * per result, known up front), each with its item's position in the plan.
 */
export class WriteResultColumnsBuilder {
  /** Per slot: its item's position in the plan (see {@link WriteResultColumns}). */
  readonly items: Int32Array;
  /** Per slot: its file id. */
  readonly file: Uint32Array;
  /** Per slot: its offset in the file (bytes). */
  readonly offset: Float64Array;
  /** Per slot: its stored length (bytes). */
  readonly length: Float64Array;
  /** Per slot: its CRC. */
  readonly checksums: Uint32Array;
  /** Per slot: its content hash, 16 bytes each; allocated with the first content hash. */
  hashes: Uint8Array = new Uint8Array(0);
  /** Per slot: 1 where it has a content hash. */
  readonly hasHash: Uint8Array;
  readonly #files: string[] = [];
  readonly #fileIds = new Map<string, number>();
  readonly #extra = new Map<number, StorageInfo & { readonly sizeInBytes?: number }>();
  #algorithm: ChecksumAlgorithm | undefined;

  /** @param count - the results. */
  constructor(count: number) {
    this.items = new Int32Array(count);
    this.file = new Uint32Array(count);
    this.offset = new Float64Array(count);
    this.length = new Float64Array(count);
    this.checksums = new Uint32Array(count);
    this.hasHash = new Uint8Array(count);
  }

  /**
   * The id of a data file in the columns.
   * @param relativePath - the file, relative to the checkpoint.
   */
  fileId(relativePath: string): number {
    let id = this.#fileIds.get(relativePath);
    if (id === undefined) {
      id = this.#files.push(relativePath) - 1;
      this.#fileIds.set(relativePath, id);
    }
    return id;
  }

  /**
   * Records a result whose CRC is `algorithm`'s and whose hash is hex digits (the common case: no copy of `info`).
   * @param slot - the result's position.
   * @param item - its item's position in the plan.
   * @param file - {@link WriteResultColumnsBuilder.fileId}'s id.
   * @param offset - where it starts in the file (bytes).
   * @param length - its stored length (bytes).
   * @param algorithm - its CRC's algorithm.
   * @param crc - its CRC.
   * @param hashes - hex digits holding its content hash at `hashAt`, or undefined for none.
   * @param hashAt - where.
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` on a hash that is not 32 lowercase hex digits.
   */
  setSums(
    slot: number,
    item: number,
    file: number,
    offset: number,
    length: number,
    algorithm: ChecksumAlgorithm,
    crc: number,
    hashes: string | undefined,
    hashAt = 0,
  ): void {
    if (this.#algorithm !== algorithm) {
      if (this.#algorithm !== undefined) {
        this.#extra.set(slot, {
          relativePath: this.#files[file]!,
          offset,
          length,
          ...(algorithm === "crc32" ? { crc32: crc } : { crc32c: crc }),
          ...(hashes !== undefined ? { contentHash: hashes.slice(hashAt, hashAt + 32) } : {}),
        });
        this.items[slot] = item;
        return;
      }
      this.#algorithm = algorithm;
    }
    this.items[slot] = item;
    this.file[slot] = file;
    this.offset[slot] = offset;
    this.length[slot] = length;
    this.checksums[slot] = crc;
    if (hashes !== undefined) {
      if (this.hashes.length === 0) this.hashes = new Uint8Array(this.items.length * RESULT_HASH_BYTES);
      hexToHash(hashes, hashAt, this.hashes, slot * RESULT_HASH_BYTES);
      this.hasHash[slot] = 1;
    }
  }

  /**
   * Records a result from its storage fields (a format's framing `info`): in the columns when
   * they hold it (a CRC and a content hash at most), else whole.
   * @param slot - the result's position.
   * @param item - its item's position in the plan.
   * @param relativePath - its file.
   * @param offset - where it starts in the file (bytes).
   * @param length - its stored length (bytes).
   * @param info - the rest of its storage entry.
   */
  set(
    slot: number,
    item: number,
    relativePath: string,
    offset: number,
    length: number,
    info: Omit<StorageInfo, "relativePath" | "offset" | "length">,
  ): void {
    const keys = Object.keys(info);
    const crcKey = info.crc32 !== undefined ? "crc32" : info.crc32c !== undefined ? "crc32c" : undefined;
    const plain =
      crcKey !== undefined &&
      keys.every((k) => k === crcKey || (k === "contentHash" && info.contentHash?.length === 32));
    if (plain) {
      this.setSums(
        slot,
        item,
        this.fileId(relativePath),
        offset,
        length,
        crcKey,
        info[crcKey]!,
        info.contentHash,
      );
      return;
    }
    this.items[slot] = item;
    this.#extra.set(slot, { relativePath, offset, length, ...info });
  }

  /**
   * Records a result made elsewhere (a reference to a base's file), kept whole.
   * @param slot - its position.
   * @param item - its item's position in the plan.
   * @param result - the result.
   */
  setResult(slot: number, item: number, result: WriteResult): void {
    this.items[slot] = item;
    this.#extra.set(slot, { ...result.storageData, sizeInBytes: result.sizeInBytes });
  }

  /**
   * The columns, over `plan`.
   * @param plan - the plan whose items the results are.
   */
  build(plan: SavePlanColumns): WriteResultColumns {
    return this.#columns(plan, (slot) => writeResultIndex(plan, this.items[slot]!));
  }

  /**
   * The results as plain objects, each named by its item in `items` (a plan of `WriteItem`s).
   * @param items - the plan's items, by the positions recorded.
   */
  toResults(items: readonly WriteItem[]): WriteResult[] {
    const columns = this.#columns(undefined, (slot) => items[this.items[slot]!]!.index);
    return Array.from({ length: this.items.length }, (_, k) => resultOf(columns, k, columns.indexOf));
  }

  #columns<P extends SavePlanColumns | undefined>(
    plan: P,
    indexOf: (slot: number) => WriteItem["index"],
  ): WriteResultColumns & { readonly indexOf: (slot: number) => WriteItem["index"] } {
    const extra = new Map<number, WriteResult>();
    for (const [slot, { sizeInBytes, ...storageData }] of this.#extra)
      extra.set(slot, { index: indexOf(slot), sizeInBytes: sizeInBytes ?? storageData.length, storageData });
    return {
      plan: plan as SavePlanColumns,
      items: this.items,
      files: this.#files,
      file: this.file,
      offset: this.offset,
      length: this.length,
      algorithm: this.#algorithm ?? "crc32",
      checksums: this.checksums,
      hashes: this.hashes,
      hasHash: this.hasHash,
      extra,
      indexOf,
    };
  }
}

/** Item `j`'s index (`WriteItem.index`) in plan `c`, as `writeItemAt` makes it. */
function writeResultIndex(c: SavePlanColumns, j: number): WriteItem["index"] {
  const f = c.fqnIds[j]!;
  const fqn = c.fqns[f]!;
  if (c.types[j] === 2) return { fqn, offset: null };
  const nd = c.shapeStarts[f + 1]! - c.shapeStarts[f]!;
  const b = c.boxStarts[j]!;
  const offset = Array.from(c.boxes.subarray(b, b + nd));
  const hint = c.chunkIndex?.[j] ?? -1;
  return hint >= 0 ? { fqn, offset, index: hint } : { fqn, offset };
}

/** Result `k` of `c` as a {@link WriteResult}, as the writer used to make it. */
function resultOf(
  c: WriteResultColumns,
  k: number,
  indexOf: (slot: number) => WriteItem["index"],
): WriteResult {
  const kept = c.extra.get(k);
  if (kept !== undefined) return kept;
  const length = c.length[k]!;
  const crc = c.checksums[k]!;
  return {
    index: indexOf(k),
    sizeInBytes: length,
    storageData: {
      relativePath: c.files[c.file[k]!]!,
      offset: c.offset[k]!,
      length,
      ...(c.algorithm === "crc32" ? { crc32: crc } : { crc32c: crc }),
      ...(c.hasHash[k] === 1 ? { contentHash: hashToHex(c.hashes, k * RESULT_HASH_BYTES) } : {}),
    },
  };
}

/** The columns behind each columnar `WriteResult[]` view. */
const columnsOf = new WeakMap<readonly WriteResult[], WriteResultColumns>();

/**
 * The public `WriteResult[]` over write result columns: each result made on first use
 * ({@link lazyArray}), so that a custom `finish` sees DCP's objects while the engine's reads
 * the columns ({@link writeResultColumns}).
 *
 * @param columns - the results.
 */
export function writeResultsView(columns: WriteResultColumns): WriteResult[] {
  const view = lazyArray(columns.items.length, (k) =>
    resultOf(columns, k, (slot) => writeResultIndex(columns.plan, columns.items[slot]!)),
  );
  columnsOf.set(view, columns);
  return view;
}

/**
 * The columns behind a {@link writeResultsView}, or `undefined` for plain results or a view
 * written to since.
 *
 * @param results - a rank's write results.
 */
export function writeResultColumns(results: readonly WriteResult[]): WriteResultColumns | undefined {
  const columns = columnsOf.get(results);
  return columns !== undefined && isUnchangedLazyArray(results) ? columns : undefined;
}

/**
 * Each data file's size as its results say: the furthest end of its items (bytes), over every
 * rank's results; references to a base's files (`baseCheckpoint`) are not this save's files.
 * Reads the columns of columnar results (no object per item).
 *
 * @param results - every rank's write results.
 */
export function writtenFileSizes(results: readonly (readonly WriteResult[])[]): Map<string, number> {
  const sizes = new Map<string, number>();
  const note = (file: string, end: number) => {
    const size = sizes.get(file);
    if (size === undefined || end > size) sizes.set(file, end);
  };
  for (const rank of results) {
    const c = writeResultColumns(rank);
    if (c === undefined) {
      for (const { storageData: d } of rank)
        if (d.baseCheckpoint === undefined) note(d.relativePath, d.offset + d.length);
      continue;
    }
    const ends = new Float64Array(c.files.length).fill(-1);
    const kept = c.extra.size > 0;
    for (let k = 0; k < c.items.length; k++) {
      if (kept && c.extra.has(k)) continue;
      const f = c.file[k]!;
      const end = c.offset[k]! + c.length[k]!;
      if (end > ends[f]!) ends[f] = end;
    }
    ends.forEach((end, f) => {
      if (end >= 0) note(c.files[f]!, end);
    });
    for (const { storageData: d } of c.extra.values())
      if (d.baseCheckpoint === undefined) note(d.relativePath, d.offset + d.length);
  }
  return sizes;
}
