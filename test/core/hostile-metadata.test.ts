import { execFileSync } from "node:child_process";
import { readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  CheckpointError,
  type CheckpointException,
  emptyTensor,
  load,
  loadStateDictFromKeys,
  MetadataError,
  save,
  shardTensor,
} from "@dcpjs/core";
import { DecodeLimitError, METADATA_FILE } from "@dcpjs/core/extend";
import { decodeMetadata } from "@dcpjs/core/testing";
import { decode, encode } from "@msgpack/msgpack";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { allRanks } from "../support/ranks.js";
import { sealMetadata } from "../support/seal-metadata.js";
import { randomTensor } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

/**
 * A real checkpoint's metadata, decoded to its raw msgpack structure for editing (layout version
 * 2: columns; docs/format.md). Entries: "a" (float32 [4, 4]; two chunks of 2 rows when `twoChunks`),
 * "list.0" (int8 [3]), "list.1" and "step" (values).
 */
async function rawMetadata(twoChunks = false) {
  const dir = await tempDir();
  const a = randomTensor("float32", [4, 4], 1);
  const state = { list: [randomTensor("int8", [3], 2), 7], step: 3 };
  if (twoChunks) {
    const halves = [0, 1].map((rank) => shardTensor(a, { dim: 0, rank, worldSize: 2 }));
    await allRanks(2, (pg) =>
      save({ a: halves[pg.rank]!, ...state }, { checkpointId: dir, processGroup: pg }),
    );
  } else {
    await save({ a, ...state }, { checkpointId: dir });
  }
  const bytes = await readFile(join(dir, METADATA_FILE));
  // biome-ignore lint/suspicious/noExplicitAny: a hand-edited msgpack body
  const raw = decode(bytes.subarray(0, bytes.byteLength - 4)) as Record<string, any>;
  return { dir, raw, bytes };
}

/** Sets element `i` of a little-endian float64 column, in place. */
function setF64(column: Uint8Array, i: number, value: number): void {
  new DataView(column.buffer, column.byteOffset, column.byteLength).setFloat64(i * 8, value, true);
}

/** The index of an entry's first storage record: records follow the entries, a chunk or a value each. */
// biome-ignore lint/suspicious/noExplicitAny: a hand-edited msgpack body
function recordOf(raw: Record<string, any>, fqn: string): number {
  const fqns = raw.entries.fqn as string[];
  const dtype = raw.entries.dtype as Uint8Array;
  const chunks = new DataView(raw.entries.chunks.buffer, raw.entries.chunks.byteOffset);
  let record = 0;
  for (let i = 0; fqns[i] !== fqn; i++) record += dtype[i] === 0xff ? 1 : chunks.getUint32(i * 4, true);
  return record;
}

/**
 * Decodes `bytes` and returns the MetadataError it must throw, checking heap growth. Not its time:
 * the walk before decoding is linear in the input and refuses before allocating (a hang, the
 * failure these guard against, is caught by the test's timeout); speed is for benchmarks.
 */
function refused(bytes: Uint8Array): MetadataError {
  const heapBefore = process.memoryUsage().heapUsed;
  let error: unknown;
  try {
    decodeMetadata(bytes);
  } catch (e) {
    error = e;
  }
  expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(64 * 1024 * 1024);
  expect(error).toBeInstanceOf(MetadataError);
  return error as MetadataError;
}

describe("hostile .metadata gets a coded MetadataError within memory bounds", { timeout: 30_000 }, () => {
  it("refuses a msgpack bomb of nested array16 headers (300 KB) within 64 MiB", () => {
    const body = new Uint8Array(300_000);
    for (let i = 0; i + 3 <= body.length; i += 3) body.set([0xdc, 0xff, 0xff], i);
    expect(refused(sealMetadata(body)).message).toMatch(/declares 65535 elements|nesting at most/);
  });

  it("refuses a container that declares more elements than bytes are left", () => {
    expect(refused(sealMetadata(Uint8Array.from([0xdd, 0x7f, 0xff, 0xff, 0xff, 0x01]))).message).toMatch(
      /declares 2147483647 elements, but only 1 bytes are left/,
    );
  });

  it("refuses 100,000 levels of nesting with a typed error, not a RangeError", () => {
    const body = new Uint8Array(100_001).fill(0x91);
    body[100_000] = 0xc0;
    const error = refused(sealMetadata(body));
    expect(error.message).toMatch(/nesting at most 64 deep/);
    expect(error).toBeInstanceOf(DecodeLimitError);
    expect((error as DecodeLimitError).limit).toBe("depth");
  });

  it("refuses a plannerData index of 4,294,967,294 (loadStateDictFromKeys does not crash)", async () => {
    const { dir, raw } = await rawMetadata();
    // "list.0" is stored as a mask (the fqn split at its dots, step 1 a list index): write it out.
    const at = (raw.entries.fqn as string[]).indexOf("list.0");
    expect(raw.entries.path[at]).toBe(2);
    raw.entries.path[at] = ["list", 4_294_967_294];
    await writeFile(join(dir, METADATA_FILE), sealMetadata(encode(raw)));
    const error = await loadStateDictFromKeys({ checkpointId: dir }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(CheckpointError);
    expect(JSON.stringify((error as CheckpointException).failures ?? error)).toMatch(/list indices below/);
  });

  it("refuses a path mask that marks a key as a list index, or that yields __proto__", async () => {
    const { raw } = await rawMetadata();
    const at = (raw.entries.fqn as string[]).indexOf("list.0");
    raw.entries.path[at] = 1; // "list" is a key, not an index
    expect(refused(sealMetadata(encode(raw))).message).toMatch(
      /expected step 0 of "list.0" to be a list index, got "list"/,
    );
    raw.entries.path[at] = 4; // three steps for a two-step fqn
    expect(refused(sealMetadata(encode(raw))).message).toMatch(
      /expected a path mask of 2 steps for "list.0", got 4/,
    );
    raw.entries.fqn[at] = "list.__proto__";
    raw.entries.path[at] = 0;
    expect(refused(sealMetadata(encode(raw))).message).toMatch(/__proto__/);
  });

  it("refuses a value whose length is 2^32 or more", async () => {
    const { raw } = await rawMetadata();
    setF64(raw.storage.length, recordOf(raw, "step"), 2 ** 40);
    expect(refused(sealMetadata(encode(raw))).message).toMatch(
      /to be at most \d+ bytes, metadata says 1099511627776/,
    );
  });

  it("refuses columns of the wrong length, data file indices out of range, and non-integer sizes", async () => {
    const { raw } = await rawMetadata();
    const length = raw.storage.length as Uint8Array;
    expect(
      refused(sealMetadata(encode({ ...raw, storage: { ...raw.storage, length: length.subarray(8) } })))
        .message,
    ).toMatch(/expected storage.length to hold 4 numbers of 8 bytes, got 24 bytes/);
    const file = raw.storage.file as Uint8Array;
    new DataView(file.buffer, file.byteOffset).setUint32(0, 7, true);
    expect(refused(sealMetadata(encode(raw))).message).toMatch(
      /expected a data file index below 1 for "a", got 7/,
    );
    new DataView(file.buffer, file.byteOffset).setUint32(0, 0, true);
    setF64(raw.entries.size, 0, 2.5);
    expect(refused(sealMetadata(encode(raw))).message).toMatch(
      /entries.size to hold non-negative integers, got 2.5/,
    );
  });

  it("reads storage.blocks' running checksums, and refuses a zero block size, miscounted or misplaced ones", async () => {
    const { raw } = await rawMetadata();
    const a = recordOf(raw, "a"); // float32 [4, 4]: 64 bytes, 4 blocks of 16
    const u32 = (...values: number[]) => {
      const bytes = new Uint8Array(values.length * 4);
      values.forEach((v, i) => {
        new DataView(bytes.buffer).setUint32(i * 4, v, true);
      });
      return bytes;
    };
    const withBlocks = (blocks: Record<string, unknown>) =>
      sealMetadata(encode({ ...raw, storage: { ...raw.storage, blocks } }));
    const good = { bytes: 16, records: u32(a), running: u32(1, 2, 3) };
    const md = decodeMetadata(withBlocks(good));
    expect(md.storageData.get("a\u00000,0")?.checksumBlocks).toEqual({ blockBytes: 16, running: [1, 2, 3] });
    expect(refused(withBlocks({ ...good, bytes: 0 })).message).toMatch(
      /expected storage.blocks.bytes to be a positive integer, got 0/,
    );
    expect(refused(withBlocks({ ...good, running: u32(1, 2) })).message).toMatch(
      /to hold the 3 checksums of record 0, 2 left/,
    );
    expect(refused(withBlocks({ ...good, running: u32(1, 2, 3, 4) })).message).toMatch(
      /expected 3 running checksums in storage.blocks.running, got 4/,
    );
    expect(refused(withBlocks({ ...good, records: u32(a, a) })).message).toMatch(
      /expected storage.blocks.records to ascend below 4, got 0 after 0/,
    );
    expect(refused(withBlocks({ ...good, records: u32(9) })).message).toMatch(/to ascend below 4, got 9/);
    expect(refused(withBlocks({ ...good, bytes: 64 })).message).toMatch(
      /running checksums only for items over 64 bytes, record 0 has 64/,
    );
    expect(refused(withBlocks({ ...good, running: "x" })).message).toMatch(
      /storage.blocks.running to be binary/,
    );
    expect(
      refused(
        sealMetadata(
          encode({ ...raw, storage: { ...raw.storage, itemFormats: [[a, "torch"]], blocks: good } }),
        ),
      ).message,
    ).toMatch(/expected no running checksums for record 0, framed as torch/);
    setF64(raw.storage.length, recordOf(raw, "step"), 64); // a value of 4 blocks
    expect(refused(withBlocks({ ...good, records: u32(recordOf(raw, "step")) })).message).toMatch(
      /expected no running checksums for the value "step"/,
    );
  });

  it("refuses chunks that leave a gap in a tensor, and chunks that overlap", async () => {
    const { raw } = await rawMetadata();
    setF64(raw.entries.size, 0, 5); // "a" is [5, 4]: one row that no chunk holds
    expect(refused(sealMetadata(encode(raw))).message).toMatch(
      /hold 16 elements, expected 20 \(a gap or an overlap\)/,
    );
    // "a" saved as two chunks of rows [0, 2) and [2, 4); make them [0, 3) and [2, 3).
    const two = await rawMetadata(true);
    setF64(two.raw.chunks.sizes, 0, 3);
    setF64(two.raw.chunks.sizes, 2, 1);
    setF64(two.raw.storage.length, recordOf(two.raw, "a"), 48);
    setF64(two.raw.storage.length, recordOf(two.raw, "a") + 1, 16);
    expect(refused(sealMetadata(encode(two.raw))).message).toMatch(
      /chunks of "a" at \[0, 0\] and \[2, 0\] overlap/,
    );
  });

  it("fuzzed metadata (random byte edits of a real file, CRC resealed) gives only MetadataError", async () => {
    const { bytes } = await rawMetadata();
    const body = bytes.subarray(0, bytes.byteLength - 4);
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(body.byteLength - 1), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 8,
        }),
        (edits) => {
          const mutated = new Uint8Array(body);
          for (const [at, value] of edits) mutated[at] = value;
          try {
            decodeMetadata(sealMetadata(mutated));
          } catch (error) {
            expect(error).toBeInstanceOf(MetadataError);
          }
        },
      ),
      { seed: 21, numRuns: 2000 },
    );
  });

  it("random msgpack structures give only MetadataError", () => {
    fc.assert(
      fc.property(fc.anything({ maxDepth: 6, withMap: false, withSet: false }), (value) => {
        let body: Uint8Array;
        try {
          body = encode(value, { ignoreUndefined: true });
        } catch {
          return; // not encodable: nothing to decode
        }
        try {
          decodeMetadata(sealMetadata(body));
        } catch (error) {
          expect(error).toBeInstanceOf(MetadataError);
        }
      }),
      { seed: 21, numRuns: 1000 },
    );
  });
});

describe("data files must be regular files inside the checkpoint folder", () => {
  async function savedWithFile() {
    const dir = await tempDir();
    const w = randomTensor("float32", [64], 1);
    await save({ w }, { checkpointId: dir });
    const file = (await readdir(dir)).find((f) => f.endsWith(".distcp"))!;
    return { dir, path: join(dir, file) };
  }

  async function loadCode(dir: string): Promise<string | undefined> {
    const error = await load({ w: emptyTensor("float32", [64]) }, { checkpointId: dir }).then(
      () => undefined,
      (e: unknown) => e,
    );
    return (error as CheckpointException | undefined)?.failures[0]?.code;
  }

  it("refuses a data file that is a symbolic link to a file outside the folder", async () => {
    const { dir, path } = await savedWithFile();
    const outside = join(await tempDir(), "outside.bin");
    await writeFile(outside, await readFile(path));
    await rm(path);
    await symlink(outside, path);
    expect(await loadCode(dir)).toBe("UNSAFE_PATH");
  });

  it("refuses a data file that is a FIFO, without waiting for a writer", async () => {
    const { dir, path } = await savedWithFile();
    await rm(path);
    execFileSync("mkfifo", [path]);
    // Opening a FIFO for reading would block until a writer came: the test's timeout is the guard.
    expect(await loadCode(dir)).toBe("UNSAFE_PATH");
  });
});
