import { MetadataError } from "@dcpjs/core";
import { decodeMetadata, encodeMetadata } from "@dcpjs/core/testing";
import { describe, expect, it } from "vitest";
import { blockChecksumFields, runningChecksums } from "../../packages/core/src/formats/checksum.js";
import type { Metadata, ReadItem, StorageInfo } from "../../packages/core/src/plan/metadata.js";
import { metadataIndexKey } from "../../packages/core/src/plan/metadata.js";
import type { ItemRead } from "../../packages/core/src/storage/read-locate.js";
import {
  expectation,
  partOf,
  ReadLocator,
  readsWholeBox,
  whereRead,
  wholeRead,
} from "../../packages/core/src/storage/read-locate.js";

const ROWS = 64;
const COLS = 1024; // float32: 4 KiB a row
const BLOCK = 16 * 1024; // 4 rows a checksum block
const LENGTH = ROWS * COLS * 4;

/** One saved float32 chunk [64, 1024] at offset 100 of `f`, with running checksums every `BLOCK` bytes. */
function metadata(itemFormat?: string): Metadata {
  const running = runningChecksums("crc32", new Uint8Array(LENGTH), BLOCK);
  const info: StorageInfo = {
    relativePath: "f",
    offset: 100,
    length: LENGTH,
    ...blockChecksumFields("crc32", running, BLOCK),
    ...(itemFormat ? { itemFormat } : {}),
  };
  return {
    version: "1.0.0",
    stateDictMetadata: new Map([
      [
        "w",
        {
          type: "tensor",
          properties: { dtype: "float32" },
          size: [ROWS, COLS],
          chunks: [{ offsets: [0, 0], sizes: [ROWS, COLS] }],
        },
      ],
      ["step", { type: "bytes" }],
    ]),
    plannerData: new Map(),
    storageData: new Map([
      [metadataIndexKey({ fqn: "w", offset: [0, 0] }), info],
      [
        metadataIndexKey({ fqn: "step", offset: null }),
        { relativePath: "f", offset: 0, length: 100, crc32: 1 },
      ],
    ]),
    storageMeta: {},
  } as unknown as Metadata;
}

/** A read of rows `[row, row + rows)` of the saved chunk. */
const rowsOf = (row: number, rows: number): ReadItem => ({
  type: "tensor",
  destIndex: { fqn: "w", offset: [row, 0] },
  destOffsets: [0, 0],
  storageIndex: { fqn: "w", offset: [0, 0] },
  storageOffsets: [row, 0],
  lengths: [rows, COLS],
});
const step: ReadItem = {
  type: "bytes",
  destIndex: { fqn: "step", offset: null },
  storageIndex: { fqn: "step", offset: null },
};

const locator = (md = metadata()) => new ReadLocator(md.storageData, md);

describe("ReadLocator: what each read item reads", () => {
  it("an item on its own reads its whole stored item, looked up once", () => {
    const l = locator();
    const item = rowsOf(8, 4);
    const read = l.located(item);
    expect(read).toMatchObject({
      start: 0,
      end: LENGTH,
      first: 0,
      offset: 100,
      length: LENGTH,
      relativePath: "f",
    });
    expect(read.key).toBe(read.chunk);
    expect(read.saved?.dtype).toBe("float32");
    expect(l.located(item)).toBe(read);
    expect(l.located(step)).toMatchObject({ saved: undefined, offset: 0, length: 100 });
  });

  it("the only reader of a saved chunk reads just the checksum blocks its rows lie in", () => {
    const [read] = locator().locateAll([rowsOf(5, 6)]); // rows 5..10: blocks 1 and 2
    expect(read).toMatchObject({
      start: BLOCK,
      end: 3 * BLOCK,
      first: 1,
      offset: 100 + BLOCK,
      length: 2 * BLOCK,
    });
    expect(read!.key).toBe(`${read!.chunk}#${BLOCK}`);
  });

  it("reads whole where two items read the chunk, where the coordinator said so, or where the blocks are all", () => {
    const l = locator();
    const two = l.locateAll([rowsOf(0, 4), rowsOf(8, 4)]);
    expect(two.map((r) => r.length)).toEqual([LENGTH, LENGTH]);
    const item = rowsOf(0, 4);
    const chunk = l.located(item).chunk;
    expect(l.locateAll([item], new Set([chunk]))[0]!.length).toBe(LENGTH);
    expect(l.locateAll([rowsOf(0, ROWS)])[0]!.length).toBe(LENGTH);
  });

  it("a format whose stored bytes are not the payload (not zeroCopy) is read whole", () => {
    const md = metadata("torch");
    const read = new ReadLocator(md.storageData, md).located(rowsOf(5, 6));
    expect(partOf(read)).toBeUndefined();
  });

  it("a missing storage entry or saved chunk is malformed metadata", () => {
    const md = metadata();
    const l = new ReadLocator(new Map(), md);
    expect(() => l.located(rowsOf(0, 1))).toThrow(MetadataError);
    const noChunk = new ReadLocator(md.storageData, { ...md, stateDictMetadata: new Map() });
    expect(() => noChunk.located(rowsOf(0, 1))).toThrow(/no chunk of "w"/);
  });

  it("names a read for messages, and what its payload must be", () => {
    const l = locator();
    const whole = l.located(rowsOf(0, 1));
    expect(whereRead("f", whole)).toBe(`f @ 100+${LENGTH}`);
    const part = partOf(wholeRead(whole.item, whole.info, whole.chunk, whole.saved))!;
    expect(whereRead("f", part)).toBe(`f @ 100+${BLOCK} (of the item @ 100+${LENGTH})`);
    expect(expectation(whole)).toEqual({ kind: "tensor", dtype: "float32", sizes: [ROWS, COLS] });
    expect(expectation(l.located(step))).toEqual({ kind: "value" });
  });

  it("reads from a columnar metadata's columns what the maps say, building entries only when asked", () => {
    const plain = metadata();
    const columnar = decodeMetadata(encodeMetadata(plain));
    const items = [rowsOf(0, ROWS), rowsOf(8, 4), step];
    const fromMaps = locator(plain).locateAll(items);
    const l = locator(columnar);
    const fromColumns = l.locateAll(items);
    const fields = ({
      item,
      info,
      saved,
      chunk,
      key,
      start,
      end,
      first,
      relativePath,
      offset,
      length,
    }: ItemRead) => ({ item, info, saved, chunk, key, start, end, first, relativePath, offset, length });
    const facts = (r: ItemRead) => [r.format.name, r.dtype, r.blocked, r.crcAlgorithm, r.crc];
    expect(fromColumns.map(fields)).toEqual(fromMaps.map(fields));
    expect(fromColumns.map(facts)).toEqual(fromMaps.map(facts));
    expect(fromColumns.map(readsWholeBox)).toEqual([true, false, false]);
    expect(fromMaps.map(readsWholeBox)).toEqual([true, false, false]);
    // One by one, a chunk with running checksums too is read from the columns as it is.
    const one = locator(columnar);
    expect(items.map((i) => fields(one.located(i)))).toEqual(
      items.map((i) => fields(locator(plain).located(i))),
    );
    expect(one.located(items[0]!).constructor).not.toBe(Object);
    expect(readsWholeBox(one.located(items[0]!))).toBe(true);
    expect(readsWholeBox(one.located(items[1]!))).toBe(false);
    // The same items again (the reader's readData after prepareGlobalPlan): the same reads.
    expect(l.locateAll(items)).toBe(fromColumns);
    expect(l.locateAll([...items])).not.toBe(fromColumns);
  });
});
