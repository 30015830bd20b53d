import { CheckpointError, emptyTensor, load, type StateDict, save, shardTensor } from "@dcpjs/core";
import { createRedisProcessGroup, decodeWire, encodeWire, fromEnv } from "@dcpjs/redis";
import { Redis } from "ioredis";
import { afterEach, describe, expect, it } from "vitest";
import { freshGroupId, redisGroups, redisUrl } from "../support/redis.js";
import { randomTensor, sameTensor } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

const open: { close(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((g) => g.close()));
});
async function groups(size: number, options: { groupId?: string; timeoutMs?: number } = {}) {
  const gs = await redisGroups(size, options);
  open.push(...gs);
  return gs;
}

describe("the wire codec", () => {
  it("keeps Maps, Sets, bigints, nested arrays and errors", () => {
    const value = {
      m: new Map<string, unknown>([["a", [1, 2n ** 60n]]]),
      s: new Set([1, 2]),
      e: Object.assign(new Error("boom"), { code: "IO_ERROR" }),
      n: null,
    };
    const back = decodeWire(encodeWire(value)) as typeof value;
    expect(back.m).toEqual(value.m);
    expect(back.s).toEqual(value.s);
    expect(back.e).toBeInstanceOf(Error);
    expect([back.e.message, (back.e as unknown as { code: string }).code]).toEqual(["boom", "IO_ERROR"]);
  });

  it("reuses one encoder and decoder: results are the caller's own, nested and failed calls leave them sound", () => {
    const first = encodeWire({ a: 1 });
    const second = encodeWire({ b: "two" });
    expect(decodeWire(first)).toEqual({ a: 1 });
    expect(decodeWire(second)).toEqual({ b: "two" });
    // Maps of Sets of Maps: every extension re-enters the codec while the outer call runs.
    const nested = new Map([["k", new Set([new Map([[1, new Set(["x"])]])])]]);
    expect(decodeWire(encodeWire({ nested, after: [1, 2] }))).toEqual({ nested, after: [1, 2] });
    // A value past the kept buffer's size, then a small one.
    const big = new Uint8Array(3 * 2 ** 20).fill(7);
    const back = (decodeWire(encodeWire({ big })) as { big: Uint8Array }).big;
    expect(Buffer.compare(back, big)).toBe(0);
    expect(decodeWire(encodeWire([1]))).toEqual([1]);
    // A truncated input throws, and the next decode works.
    expect(() => decodeWire(second.subarray(0, 3))).toThrow();
    expect(decodeWire(encodeWire({ c: 3n }))).toEqual({ c: 3n });
  });
});

describe("RedisProcessGroup on a real Redis server", () => {
  it("runs gather, scatter, broadcast, allGather and barrier across 3 ranks", async () => {
    const pgs = await groups(3);
    const out = await Promise.all(
      pgs.map(async (pg) => {
        const gathered = await pg.gather({ rank: pg.rank, big: BigInt(pg.rank) << 40n }, 1);
        const scattered = await pg.scatter(pg.rank === 2 ? ["a", "b", "c"] : undefined, 2);
        const broadcast = await pg.broadcast(pg.rank === 0 ? new Map([["k", 42]]) : undefined);
        const all = await pg.allGather(pg.rank * 10);
        await pg.barrier();
        return { gathered, scattered, broadcast, all };
      }),
    );
    expect(out[1]!.gathered).toEqual([0, 1, 2].map((r) => ({ rank: r, big: BigInt(r) << 40n })));
    expect(out[0]!.gathered).toBeUndefined();
    expect(out.map((o) => o.scattered)).toEqual(["a", "b", "c"]);
    for (const o of out) {
      expect(o.broadcast).toEqual(new Map([["k", 42]]));
      expect(o.all).toEqual([0, 10, 20]);
    }
  });

  it("cleans up each collective's keys, and keeps two groups apart", async () => {
    const [a, b] = [freshGroupId(), freshGroupId()];
    const ga = await groups(2, { groupId: a });
    const gb = await groups(2, { groupId: b });
    const res = await Promise.all([
      ...ga.map((pg) => pg.allGather(`a${pg.rank}`)),
      ...gb.map((pg) => pg.allGather(`b${pg.rank}`)),
    ]);
    expect(res).toEqual([
      ["a0", "a1"],
      ["a0", "a1"],
      ["b0", "b1"],
      ["b0", "b1"],
    ]);
    const redis = new Redis(redisUrl());
    try {
      expect(await redis.keys(`dcpjs:${a}:*`)).toEqual([]);
    } finally {
      redis.disconnect();
    }
  });

  it("fails every waiting rank with TIMEOUT naming the rank that did not arrive", async () => {
    const pgs = await groups(3, { timeoutMs: 800 });
    const settled = await Promise.allSettled([pgs[0]!.barrier(), pgs[1]!.barrier()]);
    for (const s of settled) {
      const e = (s as PromiseRejectedResult).reason as CheckpointError;
      expect(e).toBeInstanceOf(CheckpointError);
      expect(e.code).toBe("TIMEOUT");
      expect(e.message).toMatch(/^Rank\(s\) \[2\] did not arrive within 800 ms/);
    }
  });

  it("fails to join with TIMEOUT naming a rank that never starts", async () => {
    const groupId = freshGroupId();
    const settled = await Promise.allSettled(
      [0, 1].map((rank) =>
        createRedisProcessGroup({ url: redisUrl(), groupId, rank, size: 3, timeoutMs: 800 }),
      ),
    );
    for (const s of settled)
      expect((s as PromiseRejectedResult).reason.message).toMatch(/^Rank\(s\) \[2\] did not arrive/);
  });

  it("rejects bad options and a missing environment, naming what was expected", async () => {
    await expect(
      createRedisProcessGroup({ url: redisUrl(), groupId: "g", rank: 3, size: 3 }),
    ).rejects.toThrow(/Expected `rank \(RANK\)` to be an integer between 0 and 2, got 3/);
    await expect(fromEnv({}, { WORLD_SIZE: "2", RANK: "0" })).rejects.toThrow(
      /Expected DCPJS_REDIS_URL or REDIS_URL/,
    );
    await expect(fromEnv({}, { DCPJS_REDIS_URL: redisUrl(), RANK: "x", WORLD_SIZE: "2" })).rejects.toThrow(
      /Expected the environment variable RANK to be an integer, got "x"/,
    );
  });

  it("joins from the environment", async () => {
    const env = {
      DCPJS_REDIS_URL: redisUrl(),
      WORLD_SIZE: "2",
      DCPJS_GROUP_ID: freshGroupId(),
      DCPJS_TIMEOUT_MS: "5000",
    };
    const pgs = await Promise.all([0, 1].map((r) => fromEnv({}, { ...env, RANK: String(r) })));
    open.push(...pgs);
    expect(await Promise.all(pgs.map((pg) => pg.allGather(pg.rank)))).toEqual([
      [0, 1],
      [0, 1],
    ]);
  });

  it("carries a whole save and resharded load (plans, metadata, failures) between ranks", async () => {
    const dir = await tempDir();
    const full = randomTensor("float32", [10, 6], 8);
    const savers = await groups(3);
    await Promise.all(
      savers.map((pg) =>
        save(
          { w: shardTensor(full, { rank: pg.rank, worldSize: 3 }), step: 5 },
          { checkpointId: dir, processGroup: pg },
        ),
      ),
    );
    const loaders = await groups(2);
    const loaded = await Promise.all(
      loaders.map(async (pg) => {
        const sd = { w: emptyTensor("float32", [10, 6]), step: 0 };
        await load(sd, { checkpointId: dir, processGroup: pg });
        return sd;
      }),
    );
    for (const sd of loaded) {
      expect(sameTensor(sd.w, full)).toBe(true);
      expect(sd.step).toBe(5);
    }
    const failing = await groups(2);
    const settled = await Promise.allSettled(
      failing.map((pg) =>
        save(pg.rank === 1 ? ({ bad: () => 0 } as unknown as StateDict) : { v: 1 }, {
          checkpointId: dir,
          processGroup: pg,
        }),
      ),
    );
    for (const s of settled)
      expect((s as PromiseRejectedResult).reason).toMatchObject({
        // Only rank 1 failed: the exception carries its code (COLLECTIVE_FAILED only for mixed codes).
        code: "INVALID_STATE_DICT",
        // A function is refused when the state dict is planned, before anything is written.
        step: "plan",
        failures: [{ rank: 1, code: "INVALID_STATE_DICT" }],
      });
  });
});
