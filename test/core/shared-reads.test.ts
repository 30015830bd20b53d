import {
  CheckpointException,
  emptyTensor,
  FileSystemReader,
  load,
  shardTensor,
  type Tensor,
} from "@dcpjs/core";
import { sharedReadBytesHeld } from "@dcpjs/core/testing";
import { describe, expect, it } from "vitest";
import { ByteCountingFileSystem } from "../support/byte-counting-fs.js";
import { flipStoredBits } from "../support/damage.js";
import { allRanks, runRanks, saveShards } from "../support/ranks.js";
import { randomTensor, sameTensor } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

// Two [2048, 1024] float32 tensors (8 MiB each) saved by 4 ranks in row chunks of 2 MiB: each
// chunk is a run of its own (1 MiB and larger are not coalesced), so it can be shared.
const SHAPE = [2048, 1024];
const full = { a: randomTensor("float32", SHAPE, 1), b: randomTensor("float32", SHAPE, 2) };
const DATA_BYTES = 2 * 2048 * 1024 * 4;

async function rowCheckpoint(): Promise<string> {
  const dir = await tempDir();
  await saveShards(full, dir, 4);
  return dir;
}

/** Rank r of 3's column shards, empty. */
const columns = (rank: number) =>
  Object.fromEntries(
    Object.keys(full).map((k) => [
      k,
      shardTensor(emptyTensor("float32", SHAPE), { dim: 1, rank, worldSize: 3 }),
    ]),
  );

/** Whether rank r's column shards hold the saved tensors' columns. */
function holdsColumns(sd: Record<string, unknown>, rank: number): boolean {
  return Object.entries(full).every(([k, t]) => {
    const shard = (sd[k] as { shards: { tensor: Tensor }[] }).shards[0]!.tensor;
    const expected = shardTensor(t, { dim: 1, rank, worldSize: 3 }).shards[0]!.tensor;
    return sameTensor(shard, expected);
  });
}

/**
 * Loads 3 in-process ranks' column shards from a row checkpoint, each rank with its own reader
 * (`sharedReadBytes` as given) over one byte-counting file system.
 */
async function loadColumns(
  dir: string,
  sharedReadBytes?: number,
): Promise<{ sds: Record<string, unknown>[]; bytesRead: number }> {
  const fs = new ByteCountingFileSystem();
  const sds = [0, 1, 2].map(columns);
  const options = sharedReadBytes === undefined ? {} : { sharedReadBytes };
  await allRanks(3, (pg) =>
    load(sds[pg.rank]!, {
      storageReader: new FileSystemReader({ path: dir, fs, ...options }),
      processGroup: pg,
    }),
  );
  return { sds, bytesRead: fs.bytesRead };
}

describe("in-process ranks share the saved chunks they all read", () => {
  it("3 column ranks of a 4-rank row checkpoint read each saved chunk once between them, bit-exact", async () => {
    const { sds, bytesRead } = await loadColumns(await rowCheckpoint());
    expect(sds.every((sd, r) => holdsColumns(sd, r))).toBe(true);
    expect(bytesRead).toBe(DATA_BYTES); // not 3x: every chunk is read (and checked) once
    expect(sharedReadBytesHeld()).toBe(0); // and dropped once every rank was done with it
  });

  it("with sharedReadBytes 0 every rank reads every chunk itself, with the same result", async () => {
    const { sds, bytesRead } = await loadColumns(await rowCheckpoint(), 0);
    expect(sds.every((sd, r) => holdsColumns(sd, r))).toBe(true);
    expect(bytesRead).toBe(3 * DATA_BYTES);
  });

  it("a budget of one chunk shares what fits and reads the rest per rank, with the same result", async () => {
    const { sds, bytesRead } = await loadColumns(await rowCheckpoint(), 2 * 1024 * 1024);
    expect(sds.every((sd, r) => holdsColumns(sd, r))).toBe(true);
    expect(bytesRead).toBeGreaterThan(DATA_BYTES);
    expect(bytesRead).toBeLessThan(3 * DATA_BYTES);
    expect(sharedReadBytesHeld()).toBe(0);
  });

  it("a rank that reads a shared chunk itself (in place) lets it go: held bytes stay near the read-ahead, not the checkpoint", async () => {
    // 8 tensors of 8 MiB saved in 4 row chunks each: 32 chunks of 2 MiB, 64 MiB in all.
    const dir = await tempDir();
    const big = Object.fromEntries(
      Array.from({ length: 8 }, (_, i) => [`t${i}`, randomTensor("float32", SHAPE, 10 + i)]),
    );
    await saveShards(big, dir, 4);
    // Rank 0 loads whole tensors (every saved chunk lands in place); rank 1 a column shard of each
    // (every chunk staged and shared with rank 0).
    const whole = Object.fromEntries(Object.keys(big).map((k) => [k, emptyTensor("float32", SHAPE)]));
    const half = Object.fromEntries(
      Object.keys(big).map((k) => [
        k,
        shardTensor(emptyTensor("float32", SHAPE), { dim: 1, rank: 1, worldSize: 2 }),
      ]),
    );
    let most = 0;
    const onProgress = () => {
      most = Math.max(most, sharedReadBytesHeld());
    };
    await allRanks(2, (pg) =>
      load(pg.rank === 0 ? whole : half, {
        storageReader: new FileSystemReader({ path: dir, onProgress }),
        processGroup: pg,
      }),
    );
    expect(Object.entries(big).every(([k, t]) => sameTensor(whole[k] as Tensor, t))).toBe(true);
    expect(most).toBeLessThanOrEqual(16 * 2 * 1024 * 1024); // at most half the chunks at once, never all 32
    expect(sharedReadBytesHeld()).toBe(0);
  });

  it("a flipped bit in a shared chunk fails every rank with its CRC-32 mismatch, naming the fqn", async () => {
    const dir = await rowCheckpoint();
    await flipStoredBits(dir, "b\u0000512,0", 4096);
    const settled = await runRanks(3, (pg) =>
      load(columns(pg.rank), { storageReader: new FileSystemReader({ path: dir }), processGroup: pg }),
    );
    for (const s of settled) {
      expect(s.status).toBe("rejected");
      const e = (s as PromiseRejectedResult).reason;
      expect(e).toBeInstanceOf(CheckpointException);
      const root = (e as CheckpointException).failures[0]!.error;
      expect(root).toMatchObject({ code: "CHECKSUM_MISMATCH", fqn: "b" });
    }
    expect(sharedReadBytesHeld()).toBe(0);
  });
});
