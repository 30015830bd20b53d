import { randomBytes } from "node:crypto";
import { CheckpointError } from "@dcpjs/core";
import { createRedisProcessGroup, type RedisProcessGroup } from "@dcpjs/redis";
import { Redis } from "ioredis";
import { afterEach, describe, expect, it } from "vitest";
import { freshGroupId, redisUrl } from "../support/redis.js";
import { startRedisServer } from "../support/redis-server.js";

const MiB = 2 ** 20;
const open: RedisProcessGroup[] = [];
const admin: Redis[] = [];
const servers: { stop(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((g) => g.close()));
  for (const r of admin.splice(0)) r.disconnect();
  for (const s of servers.splice(0)) await s.stop();
});

/** `size` ranks of one fresh group in this process, with `pieceBytes` pieces. */
async function groups(size: number, pieceBytes: number, timeoutMs = 30_000, url = redisUrl()) {
  const groupId = freshGroupId();
  const gs = await Promise.all(
    Array.from({ length: size }, (_, rank) =>
      createRedisProcessGroup({ url, groupId, rank, size, pieceBytes, timeoutMs }),
    ),
  );
  open.push(...gs);
  return { gs, groupId };
}

function redis(url = redisUrl()): Redis {
  const r = new Redis(url);
  admin.push(r);
  return r;
}

/** The group's keys and the size of each value (strings: bytes; hashes: the largest field). */
async function keySizes(r: Redis, groupId: string): Promise<Map<string, number>> {
  const sizes = new Map<string, number>();
  for (const key of await r.keys(`dcpjs:${groupId}:*`)) {
    const type = await r.type(key);
    if (type === "string") sizes.set(key, await r.strlen(key));
    if (type === "hash") {
      const fields = await r.hkeys(key);
      const lengths = await Promise.all(fields.map((f) => r.hstrlen(key, f)));
      sizes.set(key, Math.max(0, ...lengths));
    }
  }
  return sizes;
}

/** Resolves once the group has `n` piece keys. */
async function piecesWritten(r: Redis, groupId: string, n: number): Promise<string[]> {
  for (;;) {
    const pieces = (await r.keys(`dcpjs:${groupId}:*:p:*`)).sort();
    if (pieces.length >= n) return pieces;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("Redis collectives in bounded pieces (real Redis)", () => {
  it("gathers 3 × 20 MiB with 8 MiB pieces byte-exact, no Redis value over 8 MiB, every key deleted after", async () => {
    const { gs, groupId } = await groups(3, 8 * MiB);
    const payloads = gs.map(() => new Uint8Array(randomBytes(20 * MiB)));
    // Ranks 1 and 2 contribute first, so their pieces can be looked at before the root reads.
    const late = [gs[1]!, gs[2]!].map((pg) => pg.gather(payloads[pg.rank], 0));
    const r = redis();
    await piecesWritten(r, groupId, 6);
    const sizes = await keySizes(r, groupId);
    expect(Math.max(...sizes.values())).toBeLessThanOrEqual(8 * MiB);
    expect([...sizes.keys()].filter((k) => k.includes(":p:")).length).toBe(6); // 3 pieces × 2 ranks
    const [gathered] = await Promise.all([gs[0]!.gather(payloads[0], 0), ...late]);
    expect(gathered).toHaveLength(3);
    for (const [rank, got] of gathered!.entries())
      expect(Buffer.compare(Buffer.from(got as Uint8Array), Buffer.from(payloads[rank]!))).toBe(0);
    expect(await r.keys(`dcpjs:${groupId}:*`)).toEqual([]);
  }, 60_000);

  it("scatters, broadcasts and all-gathers values larger than the piece, small values beside them", async () => {
    const { gs, groupId } = await groups(3, 64 * 1024);
    const big = (seed: number) => ({ seed, bytes: new Uint8Array(randomBytes(300_000 + seed)) });
    const same = (got: unknown, want: { seed: number; bytes: Uint8Array }) => {
      const g = got as { seed: number; bytes: Uint8Array };
      expect(g.seed).toBe(want.seed);
      expect(Buffer.compare(Buffer.from(g.bytes), Buffer.from(want.bytes))).toBe(0);
    };
    const scattered = [big(0), { seed: 1, small: "x" }, big(2)];
    const broadcast = new Map([["w", big(7)]]);
    const mine = gs.map((pg) => (pg.rank === 1 ? "small" : big(pg.rank)));
    const out = await Promise.all(
      gs.map(async (pg) => ({
        s: await pg.scatter(pg.rank === 0 ? scattered : undefined, 0),
        b: await pg.broadcast(pg.rank === 1 ? broadcast : undefined, 1),
        a: await pg.allGather(mine[pg.rank]),
      })),
    );
    for (const [rank, o] of out.entries()) {
      if (rank === 1) expect(o.s).toEqual(scattered[1]);
      else same(o.s, scattered[rank] as { seed: number; bytes: Uint8Array });
      expect(o.b).toBeInstanceOf(Map);
      same((o.b as Map<string, unknown>).get("w"), broadcast.get("w")!);
      expect(o.a[1]).toBe("small");
      same(o.a[0], mine[0] as { seed: number; bytes: Uint8Array });
      same(o.a[2], mine[2] as { seed: number; bytes: Uint8Array });
    }
    expect(await redis().keys(`dcpjs:${groupId}:*`)).toEqual([]);
  }, 60_000);

  it("a piece lost mid-way fails the reading rank with IO_ERROR naming the piece, well within the timeout", async () => {
    const { gs, groupId } = await groups(3, 64 * 1024, 20_000);
    const payload = () => new Uint8Array(randomBytes(150_000)); // 3 pieces of at most 64 KiB
    const late = [gs[1]!, gs[2]!].map((pg) => pg.gather(payload(), 0));
    const r = redis();
    const pieces = await piecesWritten(r, groupId, 6);
    const victim = pieces.find((k) => k.endsWith(":p:r1:1"))!;
    expect(await r.del(victim)).toBe(1);
    const started = performance.now();
    const error = await gs[0]!.gather(payload(), 0).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CheckpointError);
    expect(error).toMatchObject({ code: "IO_ERROR" });
    expect((error as Error).message).toMatch(
      /^Expected piece 1 of 3 of value "r1" in Redis at .* at collective #\d+ of group "[^"]+" \(rank 0\), got none/,
    );
    expect(performance.now() - started).toBeLessThan(5_000);
    await Promise.all(late); // the senders were done at their contribution
  }, 60_000);

  it("a piece of the wrong length (a foreign or damaged key) fails the reading rank with IO_ERROR naming it", async () => {
    const { gs, groupId } = await groups(3, 64 * 1024, 20_000);
    const payload = () => new Uint8Array(randomBytes(150_000));
    const late = [gs[1]!, gs[2]!].map((pg) => pg.gather(payload(), 0));
    const r = redis();
    const pieces = await piecesWritten(r, groupId, 6);
    await r.set(pieces.find((k) => k.endsWith(":p:r2:0"))!, Buffer.alloc(10));
    const error = await gs[0]!.gather(payload(), 0).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "IO_ERROR" });
    expect((error as Error).message).toMatch(
      /^Expected piece 0 of 3 of value "r2" .* to hold 65536 bytes, got 10$/,
    );
    await Promise.all(late);
  }, 60_000);

  it("a piece Redis refuses (maxmemory reached) fails its sender with IO_ERROR carrying Redis' reason, and the root with TIMEOUT naming that rank", async () => {
    const server = await startRedisServer(() => {}, { own: true });
    servers.push(server);
    await redis(server.url).config("SET", "maxmemory", String(4 * MiB));
    const { gs } = await groups(3, 256 * 1024, 1500, server.url);
    const settled = await Promise.allSettled(
      gs.map((pg) => pg.gather(new Uint8Array(pg.rank === 2 ? 8 * MiB : 16), 0)),
    );
    const [root, , big] = settled.map((s) => (s as PromiseRejectedResult).reason as CheckpointError);
    expect(big).toBeInstanceOf(CheckpointError);
    expect(big!.code).toBe("IO_ERROR");
    expect(big!.message).toMatch(/^Redis at .* failed at collective #\d+ of group .* \(rank 2\): OOM/);
    expect(root!.code).toBe("TIMEOUT");
    expect(root!.message).toMatch(/^Rank\(s\) \[2\] did not arrive within 1500 ms/);
  }, 60_000);

  it("rejects a piece size outside 1 KiB … 512 MiB", async () => {
    await expect(
      createRedisProcessGroup({
        url: redisUrl(),
        groupId: freshGroupId(),
        rank: 0,
        size: 1,
        pieceBytes: 100,
      }),
    ).rejects.toThrow(/Expected pieceBytes to be an integer from 1024 to 536870912, got 100/);
  });
});
