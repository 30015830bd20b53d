import { createLocalProcessGroups, DefaultSavePlanner, save, shardTensor } from "@dcpjs/core";
import { encodeSavePlan } from "@dcpjs/core/extend";
import { coordinatePlans, type PlanMessage } from "@dcpjs/core/testing";
import { describe, expect, it, vi } from "vitest";
import { randomTensor } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

describe("the save coordinator's memory (issue #28)", () => {
  it("lets each gathered plan's bytes go once decoded, keeping its hash; the cache still reuses the global plan", () => {
    const [pg] = createLocalProcessGroups(1);
    const planner = new DefaultSavePlanner();
    planner.setUpPlanner({ v: randomTensor("float32", [4]) });
    const bytes = encodeSavePlan(planner.createLocalPlan());
    const hash = "d".repeat(32);
    const messages: PlanMessage[] = [{ bytes, hash }];
    const first = coordinatePlans(messages, pg!, "k", planner);
    expect(first.resend).toBeUndefined();
    expect(messages).toEqual([{ hash }]);
    const { globalId } = first as { globalId: string };
    expect(coordinatePlans([{ hash, globalId }], pg!, "k", planner)).toMatchObject({
      reused: true,
      globalId,
    });
  });

  it("makes each rank's reply as the scatter reads it, not all before it", async () => {
    const dir = await tempDir();
    const groups = createLocalProcessGroups(3);
    const root = groups[0]!;
    const scatter = root.scatter.bind(root);
    const reads: boolean[] = [];
    vi.spyOn(root, "scatter").mockImplementation((values, r) => {
      if (values !== undefined && values.length === 3) {
        const once = values[1];
        reads.push(once !== values[1]);
      }
      return scatter(values, r);
    });
    const w = randomTensor("float32", [6, 2]);
    await Promise.all(
      groups.map((pg) =>
        save({ w: shardTensor(w, { rank: pg.rank, worldSize: 3 }) }, { checkpointId: dir, processGroup: pg }),
      ),
    );
    vi.restoreAllMocks();
    // The plan step's scatter: a value made on every read (the load's would be the same objects).
    expect(reads[0]).toBe(true);
  });
});
