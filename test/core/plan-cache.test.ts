import {
  createLocalProcessGroups,
  DefaultSavePlanner,
  type ProcessGroup,
  type StateDict,
  save,
  shardTensor,
} from "@dcpjs/core";
import { coordinatePlans } from "@dcpjs/core/testing";
import { describe, expect, it, vi } from "vitest";
import { expectLoadsWhole } from "../support/load-back.js";
import { watchPlanStep } from "../support/plan-step.js";
import { randomTensor } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

/** What each rank sent in the save's plan step, per round: "plan" (the whole plan) or "hash". */
function watchPlans(groups: readonly ProcessGroup[]): string[][] {
  return watchPlanStep(groups, (message) => (message.plan || message.bytes ? "plan" : "hash"));
}

/** The fqns the last {@link saveAll} committed. */
let lastKeys: string[] = [];

/** Saves every rank's state dict through `groups`, and what crossed the plan step. */
async function saveAll(
  groups: readonly ProcessGroup[],
  sds: readonly StateDict[],
  dir: string,
): Promise<string[][]> {
  const rounds = watchPlans(groups);
  const saved = await Promise.all(
    groups.map((pg) => save(sds[pg.rank]!, { checkpointId: dir, processGroup: pg })),
  );
  lastKeys = [...saved[0]!.stateDictMetadata.keys()];
  vi.restoreAllMocks();
  return rounds;
}

/** Loads `full`'s fqns whole (one rank) and checks them, and that the last save committed exactly them. */
async function expectSaved(
  dir: string,
  full: Record<string, ReturnType<typeof randomTensor>>,
): Promise<void> {
  await expectLoadsWhole(dir, full);
  expect(lastKeys.sort()).toEqual(Object.keys(full).sort());
}

const sharded = (full: Record<string, ReturnType<typeof randomTensor>>, rank: number, worldSize: number) =>
  Object.fromEntries(Object.entries(full).map(([fqn, t]) => [fqn, shardTensor(t, { rank, worldSize })]));

describe("plan caching across saves", () => {
  it("sends hashes, not plans, when a save repeats with unchanged plans, and saves the new data", async () => {
    const groups = createLocalProcessGroups(3);
    const a = { w: randomTensor("float32", [6, 4], 1), b: randomTensor("int16", [5], 2) };
    expect(
      await saveAll(
        groups,
        [0, 1, 2].map((r) => sharded(a, r, 3)),
        await tempDir(),
      ),
    ).toEqual([["plan", "plan", "plan"]]);
    const next = { w: randomTensor("float32", [6, 4], 3), b: randomTensor("int16", [5], 4) };
    const dir = await tempDir();
    expect(
      await saveAll(
        groups,
        [0, 1, 2].map((r) => sharded(next, r, 3)),
        dir,
      ),
    ).toEqual([["hash", "hash", "hash"]]);
    await expectSaved(dir, next);
  });

  const changes: [
    string,
    Record<string, ReturnType<typeof randomTensor>>,
    ((r: number) => StateDict) | undefined,
  ][] = [
    ["a shape", { w: randomTensor("float32", [6, 5], 5), b: randomTensor("int16", [5], 6) }, undefined],
    ["a dtype", { w: randomTensor("float64", [6, 4], 5), b: randomTensor("int16", [5], 6) }, undefined],
    [
      "a new key",
      {
        w: randomTensor("float32", [6, 4], 5),
        b: randomTensor("int16", [5], 6),
        c: randomTensor("uint8", [3], 7),
      },
      undefined,
    ],
    ["a removed key", { w: randomTensor("float32", [6, 4], 5) }, undefined],
  ];
  for (const [what, full] of changes) {
    it(`sees ${what} and plans anew`, async () => {
      const groups = createLocalProcessGroups(3);
      const a = { w: randomTensor("float32", [6, 4], 1), b: randomTensor("int16", [5], 2) };
      await saveAll(
        groups,
        [0, 1, 2].map((r) => sharded(a, r, 3)),
        await tempDir(),
      );
      const dir = await tempDir();
      expect(
        await saveAll(
          groups,
          [0, 1, 2].map((r) => sharded(full, r, 3)),
          dir,
        ),
      ).toEqual([["plan", "plan", "plan"]]);
      await expectSaved(dir, full);
    });
  }

  it("sees a change of sharding, and a change on one rank only (every rank then sends its plan again)", async () => {
    const groups = createLocalProcessGroups(2);
    const w = randomTensor("float32", [8, 2], 1);
    await saveAll(
      groups,
      [0, 1].map((r) => ({ w: shardTensor(w, { rank: r, worldSize: 2 }) })),
      await tempDir(),
    );
    // Sharded along the other dimension: every rank's plan changes.
    let dir = await tempDir();
    expect(
      await saveAll(
        groups,
        [0, 1].map((r) => ({ w: shardTensor(w, { rank: r, worldSize: 2, dim: 1 }) })),
        dir,
      ),
    ).toEqual([["plan", "plan"]]);
    await expectSaved(dir, { w });
    // Rank 1 alone holds one more value: rank 0 sends its hash, the coordinator asks again.
    const extra = randomTensor("int8", [3], 9);
    dir = await tempDir();
    expect(
      await saveAll(
        groups,
        [0, 1].map((r) => ({
          w: shardTensor(w, { rank: r, worldSize: 2, dim: 1 }),
          ...(r === 1 ? { extra } : {}),
        })),
        dir,
      ),
    ).toEqual([
      ["hash", "plan"],
      ["plan", "plan"],
    ]);
    await expectSaved(dir, { w, extra });
  });

  it("keeps caches apart per process group: another rank count plans anew", async () => {
    const w = randomTensor("float32", [12, 2], 1);
    await saveAll(
      createLocalProcessGroups(2),
      [0, 1].map((r) => ({ w: shardTensor(w, { rank: r, worldSize: 2 }) })),
      await tempDir(),
    );
    const dir = await tempDir();
    const four = createLocalProcessGroups(4);
    expect(
      await saveAll(
        four,
        [0, 1, 2, 3].map((r) => ({ w: shardTensor(w, { rank: r, worldSize: 4 }) })),
        dir,
      ),
    ).toEqual([["plan", "plan", "plan", "plan"]]);
    await expectSaved(dir, { w });
  });

  it("plans every save anew with planCaching: false", async () => {
    const groups = createLocalProcessGroups(2);
    const w = randomTensor("float32", [4, 2], 1);
    const sds = [0, 1].map((r) => ({ w: shardTensor(w, { rank: r, worldSize: 2 }) }));
    for (let i = 0; i < 2; i++) {
      const dir = await tempDir();
      const rounds = watchPlans(groups);
      await Promise.all(
        groups.map((pg) =>
          save(sds[pg.rank]!, {
            checkpointId: dir,
            processGroup: pg,
            planner: new DefaultSavePlanner({ planCaching: false }),
          }),
        ),
      );
      vi.restoreAllMocks();
      expect(rounds).toEqual([["plan", "plan"]]);
    }
  });

  it("never reuses a global plan the coordinator does not hold: unknown hashes or another global plan → every plan again", () => {
    const [pg] = createLocalProcessGroups(1);
    const planner = new DefaultSavePlanner();
    expect(coordinatePlans([{ hash: "a".repeat(32), globalId: "x" }], pg!, "k", planner)).toEqual({
      resend: true,
    });
    planner.setUpPlanner({ v: 1 });
    const plan = planner.createLocalPlan();
    const first = coordinatePlans([{ plan, hash: "b".repeat(32) }], pg!, "k", planner);
    expect(first.resend).toBeUndefined();
    const globalId = (first as { globalId: string }).globalId;
    expect(coordinatePlans([{ hash: "b".repeat(32), globalId }], pg!, "k", planner)).toMatchObject({
      reused: true,
    });
    expect(coordinatePlans([{ hash: "b".repeat(32), globalId: "other" }], pg!, "k", planner)).toEqual({
      resend: true,
    });
    expect(coordinatePlans([{ hash: "c".repeat(32), globalId }], pg!, "k", planner)).toEqual({
      resend: true,
    });
    expect(coordinatePlans([{ hash: "b".repeat(32), globalId }], pg!, "other key", planner)).toEqual({
      resend: true,
    });
  });
});
