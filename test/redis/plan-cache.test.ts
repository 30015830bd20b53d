import { type ProcessGroup, type StateDict, save, shardTensor } from "@dcpjs/core";
import { afterEach, describe, expect, it, vi } from "vitest";
import { expectLoadsWhole } from "../support/load-back.js";
import { watchPlanStep } from "../support/plan-step.js";
import { redisGroups } from "../support/redis.js";
import { randomTensor } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

const open: { close(): Promise<void> }[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(open.splice(0).map((g) => g.close()));
});

/** Saves through `groups`; per round of the plan step, what each rank sent: "bytes", "object" or "hash". */
async function saveAll(
  groups: readonly ProcessGroup[],
  sds: readonly StateDict[],
  dir: string,
): Promise<string[][]> {
  const rounds = watchPlanStep(groups);
  await Promise.all(groups.map((pg) => save(sds[pg.rank]!, { checkpointId: dir, processGroup: pg })));
  vi.restoreAllMocks();
  return rounds;
}

describe("plan caching over Redis", () => {
  it("sends encoded plans, then hashes when the plans are unchanged, and plans anew on a change", async () => {
    const groups = await redisGroups(2);
    open.push(...groups);
    const shard = (full: Record<string, ReturnType<typeof randomTensor>>, r: number) =>
      Object.fromEntries(
        Object.entries(full).map(([k, t]) => [k, shardTensor(t, { rank: r, worldSize: 2 })]),
      );
    const a = { w: randomTensor("float32", [6, 3], 1), step: randomTensor("int64", [1], 2) };
    expect(
      await saveAll(
        groups,
        [0, 1].map((r) => shard(a, r)),
        await tempDir(),
      ),
    ).toEqual([["bytes", "bytes"]]);
    const b = { w: randomTensor("float32", [6, 3], 3), step: randomTensor("int64", [1], 4) };
    let dir = await tempDir();
    expect(
      await saveAll(
        groups,
        [0, 1].map((r) => shard(b, r)),
        dir,
      ),
    ).toEqual([["hash", "hash"]]);
    await expectLoadsWhole(dir, b);
    const c = { w: randomTensor("float32", [6, 4], 5), step: randomTensor("int64", [1], 6) };
    dir = await tempDir();
    expect(
      await saveAll(
        groups,
        [0, 1].map((r) => shard(c, r)),
        dir,
      ),
    ).toEqual([["bytes", "bytes"]]);
    await expectLoadsWhole(dir, c);
    // One rank's change: the other's hash is not enough, and every rank sends its plan again.
    const d = { ...c, extra: randomTensor("uint8", [4], 7) };
    dir = await tempDir();
    expect(
      await saveAll(
        groups,
        [0, 1].map((r) => (r === 0 ? shard(c, r) : { ...shard(c, r), extra: d.extra })),
        dir,
      ),
    ).toEqual([
      ["hash", "bytes"],
      ["bytes", "bytes"],
    ]);
    await expectLoadsWhole(dir, d);
  });
});

describe("a one-rank Redis group", () => {
  it("saves twice and loads back: no plan cache, and the committed metadata crosses its wire as plain maps", async () => {
    const [pg] = await redisGroups(1);
    open.push(pg!);
    const dir = await tempDir();
    const full = { w: randomTensor("float32", [6, 3], 3) };
    const rounds = await saveAll([pg!], [full], dir);
    expect(rounds).toEqual([["bytes"]]);
    expect(await saveAll([pg!], [full], dir)).toEqual([["bytes"]]);
    await expectLoadsWhole(dir, full);
  });
});
