import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  CheckpointException,
  emptyTensor,
  FileSystemReader,
  load,
  shardTensor,
  type Tensor,
} from "@dcpjs/core";
import { METADATA_FILE, metadataIndexKey, type StorageInfo } from "@dcpjs/core/extend";
import { CHECKSUM_BLOCK_BYTES, decodeMetadata, encodeMetadata, workerTasksRun } from "@dcpjs/core/testing";
import { describe, expect, it } from "vitest";
import { ByteCountingFileSystem } from "../support/byte-counting-fs.js";
import { flipStoredBits } from "../support/damage.js";
import { allRanks, saveShards } from "../support/ranks.js";
import { randomTensor, sameTensor } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

// One [4096, 1024] float32 tensor (16 MiB) saved by 2 ranks in row chunks of 8 MiB: 8 checksum
// blocks of 1 MiB each. Rows are 4 KiB, so a block holds 256 rows.
const ROWS = 4096;
const COLS = 1024;
const ROW_BYTES = COLS * 4;
const full = randomTensor("float32", [ROWS, COLS], 7);

async function rowCheckpoint(worldSize = 2): Promise<string> {
  const dir = await tempDir();
  await saveShards({ w: full }, dir, worldSize);
  return dir;
}

/** Rank `rank` of `worldSize`'s row shard of `w`, empty. */
const rowShard = (rank: number, worldSize: number) => ({
  w: shardTensor(emptyTensor("float32", [ROWS, COLS]), { rank, worldSize }),
});
const shardOf = (sd: { w: unknown }) => (sd.w as { shards: { tensor: Tensor }[] }).shards[0]!.tensor;
const expectedShard = (rank: number, worldSize: number) =>
  shardTensor(full, { rank, worldSize }).shards[0]!.tensor;

/** Rows `[start, end)` of rank `rank` of `worldSize` (torch.chunk's split, as shardTensor). */
function rowsOf(rank: number, worldSize: number): [number, number] {
  const per = Math.ceil(ROWS / worldSize);
  return [Math.min(rank * per, ROWS), Math.min((rank + 1) * per, ROWS)];
}

/**
 * The bytes a rank reads when it reads only the 1 MiB blocks its rows lie in, of a checkpoint saved
 * in `savedRanks` row chunks: per saved chunk it overlaps, its rows' bytes widened to block bounds.
 */
function blockBytesFor(rows: [number, number], savedRanks: number): number {
  let total = 0;
  for (let c = 0; c < savedRanks; c++) {
    const [c0, c1] = rowsOf(c, savedRanks);
    const a = Math.max(rows[0], c0);
    const b = Math.min(rows[1], c1);
    if (a >= b) continue;
    const start = Math.floor(((a - c0) * ROW_BYTES) / CHECKSUM_BLOCK_BYTES) * CHECKSUM_BLOCK_BYTES;
    const end = Math.min(
      Math.ceil(((b - c0) * ROW_BYTES) / CHECKSUM_BLOCK_BYTES) * CHECKSUM_BLOCK_BYTES,
      (c1 - c0) * ROW_BYTES,
    );
    total += end - start;
  }
  return total;
}

/** The root cause a failed load reports: the first rank failure's error. */
async function rootError(loading: Promise<unknown>): Promise<unknown> {
  const error = await loading.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(CheckpointException);
  return (error as CheckpointException).failures[0]!.error;
}

/** Loads rank `rank` of `worldSize`'s row shard alone (as one process of a multi-process job would). */
async function loadRowShard(dir: string, rank: number, worldSize: number, workerMinBytes?: number) {
  const fs = new ByteCountingFileSystem();
  const sd = rowShard(rank, worldSize);
  await load(sd, {
    storageReader: new FileSystemReader({
      path: dir,
      fs,
      ...(workerMinBytes !== undefined ? { workerMinBytes } : {}),
    }),
  });
  return { shard: shardOf(sd), bytesRead: fs.bytesRead };
}

describe("partial reads: a rank reads and verifies only the checksum blocks of a saved chunk its box lies in", () => {
  it("saves record a running CRC-32 at each 1 MiB block end of items over one block, none for smaller ones", async () => {
    const dir = await tempDir();
    const small = randomTensor("float32", [1000], 3);
    await saveShards({ w: full, small }, dir, 2);
    const md = decodeMetadata(await readFile(join(dir, METADATA_FILE)));
    const chunk = md.storageData.get(metadataIndexKey({ fqn: "w", offset: [0, 0] }))!;
    expect(chunk.checksumBlocks?.blockBytes).toBe(CHECKSUM_BLOCK_BYTES);
    expect(chunk.checksumBlocks?.running).toHaveLength(7); // 8 blocks: the last one's is the item's CRC-32
    const smallInfo = [...md.storageData].find(([k]) => k.startsWith("small"))![1];
    expect(smallInfo.checksumBlocks).toBeUndefined();
  });

  it.each([
    [0, 3],
    [1, 3],
    [2, 3],
    [5, 8],
  ])(
    "rank %i of %i of a finer row sharding reads only its rows' blocks of the 2 saved chunks, bit-exact",
    async (rank, worldSize) => {
      const dir = await rowCheckpoint();
      const { shard, bytesRead } = await loadRowShard(dir, rank, worldSize);
      expect(sameTensor(shard, expectedShard(rank, worldSize))).toBe(true);
      const expected = blockBytesFor(rowsOf(rank, worldSize), 2);
      expect(bytesRead).toBe(expected);
      // Less than the whole chunks it overlaps (8 MiB each).
      expect(bytesRead).toBeLessThan(rank === 1 && worldSize === 3 ? 16 * 2 ** 20 : 8 * 2 ** 20);
    },
  );

  it.each([
    ["on a worker thread", undefined],
    ["on the main thread", Number.POSITIVE_INFINITY],
  ])(
    "a flipped bit in a block the rank reads fails its load with CHECKSUM_MISMATCH naming the fqn and the block (checked %s)",
    async (_where, workerMinBytes) => {
      const dir = await rowCheckpoint();
      // Rank 1 of 3 reads rows 1366–2731: blocks 5–7 of chunk 0 and 0–2 of chunk 1. Damage block 6 of chunk 0.
      await flipStoredBits(dir, "w\u00000,0", 6 * CHECKSUM_BLOCK_BYTES + 100);
      const tasks = workerTasksRun();
      const error = await rootError(loadRowShard(dir, 1, 3, workerMinBytes));
      expect(error).toMatchObject({ code: "CHECKSUM_MISMATCH", fqn: "w", algorithm: "CRC-32" });
      expect((error as Error).message).toMatch(
        /@ 5242880\+3145728 \(of the item @ 0\+8388608\), running checksum at the end of block 6 of 8/,
      );
      if (workerMinBytes === undefined) expect(workerTasksRun()).toBeGreaterThan(tasks);
    },
  );

  it("a flipped bit in a block the rank does not read leaves its load intact; a whole load finds it", async () => {
    const dir = await rowCheckpoint();
    // Rank 0 of 3 reads rows 0–1365: blocks 0–5 of chunk 0. Damage block 7.
    await flipStoredBits(dir, "w\u00000,0", 7 * CHECKSUM_BLOCK_BYTES + 5);
    const { shard } = await loadRowShard(dir, 0, 3);
    expect(sameTensor(shard, expectedShard(0, 3))).toBe(true);
    const whole = { w: emptyTensor("float32", [ROWS, COLS]) };
    expect(
      await rootError(load(whole, { storageReader: new FileSystemReader({ path: dir }) })),
    ).toMatchObject({
      code: "CHECKSUM_MISMATCH",
      fqn: "w",
    });
  });

  it("a whole load checks every running checksum: a .metadata whose running value is wrong fails, though the item's CRC-32 matches", async () => {
    const dir = await rowCheckpoint();
    const file = join(dir, METADATA_FILE);
    const md = decodeMetadata(await readFile(file));
    const key = metadataIndexKey({ fqn: "w", offset: [0, 0] });
    const info = md.storageData.get(key)!;
    const running = [...info.checksumBlocks!.running];
    running[3] = (running[3]! ^ 1) >>> 0;
    const storageData = new Map(md.storageData);
    storageData.set(key, { ...info, checksumBlocks: { ...info.checksumBlocks!, running } });
    await writeFile(file, encodeMetadata({ ...md, storageData }));
    const whole = { w: emptyTensor("float32", [ROWS, COLS]) };
    expect(
      await rootError(load(whole, { storageReader: new FileSystemReader({ path: dir }) })),
    ).toMatchObject({
      code: "CHECKSUM_MISMATCH",
      message: expect.stringMatching(/end of block 3 of 8/),
    });
  });

  it("a checkpoint without running checksums (dcpjs before them) is read whole chunk by chunk, bit-exact", async () => {
    const dir = await rowCheckpoint();
    const file = join(dir, METADATA_FILE);
    const md = decodeMetadata(await readFile(file));
    const storageData = new Map<string, StorageInfo>();
    for (const [k, { checksumBlocks: _, ...rest }] of md.storageData) storageData.set(k, rest);
    await writeFile(file, encodeMetadata({ ...md, storageData }));
    const { shard, bytesRead } = await loadRowShard(dir, 1, 3);
    expect(sameTensor(shard, expectedShard(1, 3))).toBe(true);
    expect(bytesRead).toBe(16 * 2 ** 20);
  });

  it("in-process ranks whose parts add up to a whole chunk share it whole; ranks needing little read their parts", async () => {
    const dir = await rowCheckpoint();
    // 3 row ranks in one process: chunk parts would be 18 MiB in all; shared whole chunks are 16.
    const fs = new ByteCountingFileSystem();
    const sds = [0, 1, 2].map((r) => rowShard(r, 3));
    await allRanks(3, (pg) =>
      load(sds[pg.rank]!, { storageReader: new FileSystemReader({ path: dir, fs }), processGroup: pg }),
    );
    sds.forEach((sd, r) => {
      expect(sameTensor(shardOf(sd), expectedShard(r, 3))).toBe(true);
    });
    expect(fs.bytesRead).toBe(16 * 2 ** 20);
    // 2 in-process ranks each needing 1/16 of the rows (shards 0 and 15 of 16): 2 blocks in all.
    const few = new ByteCountingFileSystem();
    const pair = [rowShard(0, 16), rowShard(15, 16)];
    await allRanks(2, (pg) =>
      load(pair[pg.rank]!, {
        storageReader: new FileSystemReader({ path: dir, fs: few }),
        processGroup: pg,
      }),
    );
    expect(sameTensor(shardOf(pair[0]!), expectedShard(0, 16))).toBe(true);
    expect(sameTensor(shardOf(pair[1]!), expectedShard(15, 16))).toBe(true);
    expect(few.bytesRead).toBe(2 * CHECKSUM_BLOCK_BYTES);
  });
});
