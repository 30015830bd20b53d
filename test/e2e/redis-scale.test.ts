import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { COLLECTIVES, runRedisWorld } from "../../packages/bench/src/redis-world.js";
import { redisUrl } from "../support/redis.js";
import { tempDir } from "../support/tmp.js";

/**
 * Rank processes of the test. 64 run in `pnpm bench redis-collectives --ranks 64` (over 2 minutes
 * on a 2-core machine, mostly process start); the test keeps to 16, within a minute.
 */
const RANKS = 16;

describe("many ranks as real processes over Redis", () => {
  it(`${RANKS} processes save a sharded checkpoint of small tensors and load it with another sharding, every shard byte-exact; values over the piece size cross in pieces`, async () => {
    const { reports } = await runRedisWorld({
      ranks: RANKS,
      redisUrl: redisUrl(),
      target: join(await tempDir(), "ckpt"),
      tensors: 16,
      iters: 3,
      // 6,000-byte values with 4 KiB pieces: every gathered, scattered and broadcast value, and
      // the plans and metadata above 4 KiB, travel in pieces between the processes.
      payloadBytes: 6000,
      pieceBytes: 4096,
    });
    expect(reports.map((r) => r.error)).toEqual(Array(RANKS).fill(undefined));
    for (const r of reports) {
      expect(r.mismatches).toEqual([]);
      expect(r).toMatchObject({ ok: true, tensors: 17 });
      for (const name of COLLECTIVES) expect(r.latencyMs?.[name]).toHaveLength(3);
    }
  }, 120_000);
});
