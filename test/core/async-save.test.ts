import {
  asyncSave,
  CheckpointError,
  emptyTensor,
  FileSystemWriter,
  load,
  shardTensor,
  type Tensor,
  tensorBytes,
} from "@dcpjs/core";
import type { SavePlan, SavePlanner, WriteResult } from "@dcpjs/core/extend";
import { describe, expect, it } from "vitest";
import { allRanks } from "../support/ranks.js";
import { randomTensor, sameTensor } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

/** A real FileSystemWriter held (a test double for ordering) until the test releases it. */
class GatedWriter extends FileSystemWriter {
  constructor(
    path: string,
    private readonly gate: Promise<void>,
    private readonly events: string[],
  ) {
    super({ path });
  }
  override async writeData(plan: SavePlan, planner: SavePlanner): Promise<WriteResult[]> {
    this.events.push("write started");
    await this.gate;
    const results = await super.writeData(plan, planner);
    this.events.push("write finished");
    return results;
  }
}

function gate() {
  let open!: () => void;
  const promise = new Promise<void>((r) => {
    open = r;
  });
  return { promise, open };
}

describe("asyncSave", () => {
  it("returns control at staged while the write is held, and saves the values of staging time", async () => {
    const dir = await tempDir();
    const events: string[] = [];
    const g = gate();
    const w = randomTensor("float32", [64, 8], 1);
    const shard = shardTensor(randomTensor("int16", [10, 3], 2), { rank: 0, worldSize: 1 });
    const sd = { w, s: shard, step: 7, config: { lr: 0.1 } };
    const snapshot = { w: randomTensor("float32", [64, 8], 1), s: randomTensor("int16", [10, 3], 2) };

    const { staged, completed } = asyncSave(sd, { storageWriter: new GatedWriter(dir, g.promise, events) });
    completed.then(() => events.push("completed"));
    await staged;
    events.push("staged");
    tensorBytes(w).fill(0xff);
    tensorBytes(shard.shards[0]!.tensor).fill(0xee);
    sd.step = 8;
    sd.config.lr = 9;
    await new Promise((r) => setTimeout(r, 20));
    events.push("released");
    g.open();
    await completed;
    expect(events.slice(-3)).toEqual(["released", "write finished", "completed"]);
    expect(events.indexOf("staged")).toBeLessThan(events.indexOf("write finished"));
    expect(events.indexOf("released")).toBeLessThan(events.indexOf("write finished"));

    const target = {
      w: emptyTensor("float32", [64, 8]),
      s: emptyTensor("int16", [10, 3]),
      step: 0,
      config: { lr: 0 },
    };
    await load(target, { checkpointId: dir });
    expect(sameTensor(target.w, snapshot.w)).toBe(true);
    expect(sameTensor(target.s, snapshot.s)).toBe(true);
    expect(target.step).toBe(7);
    expect(target.config.lr).toBe(0.1);
  });

  it("works across in-process ranks", async () => {
    const dir = await tempDir();
    const full = randomTensor("float64", [12, 4], 3);
    await allRanks(3, async (pg) => {
      const mine = shardTensor(full, { rank: pg.rank, worldSize: 3 });
      const { staged, completed } = asyncSave({ w: mine }, { checkpointId: dir, processGroup: pg });
      await staged;
      tensorBytes(mine.shards[0]!.tensor as Tensor).fill(0);
      return completed;
    });
    const target = { w: emptyTensor("float64", [12, 4]) };
    await load(target, { checkpointId: dir });
    // The shards were views of `full`, zeroed after staging; the checkpoint has the staged values.
    expect(sameTensor(target.w, randomTensor("float64", [12, 4], 3))).toBe(true);
    expect(sameTensor(full, emptyTensor("float64", [12, 4]))).toBe(true);
  });

  it("makes a second call wait for the first by default, or fail with SAVE_IN_PROGRESS", async () => {
    const events: string[] = [];
    const g = gate();
    const first = asyncSave(
      { a: randomTensor("uint8", [4]) },
      { storageWriter: new GatedWriter(await tempDir(), g.promise, events) },
    );
    const failed = asyncSave(
      { a: randomTensor("uint8", [4]) },
      { checkpointId: await tempDir(), whenBusy: "fail" },
    );
    await expect(failed.staged).rejects.toMatchObject({ code: "SAVE_IN_PROGRESS" });
    await expect(failed.completed).rejects.toBeInstanceOf(CheckpointError);

    const second = asyncSave({ a: randomTensor("uint8", [4]) }, { checkpointId: await tempDir() });
    second.staged.then(() => events.push("second staged"));
    await first.staged;
    await new Promise((r) => setTimeout(r, 20));
    events.push("first released");
    g.open();
    await first.completed;
    events.push("first completed");
    await second.completed;
    expect(events.indexOf("second staged")).toBeGreaterThan(events.indexOf("first released"));
  });

  it("refuses to stage more than maxStagingBytes", async () => {
    const { staged, completed } = asyncSave(
      { a: randomTensor("float32", [100]) },
      { checkpointId: await tempDir(), maxStagingBytes: 399 },
    );
    await expect(staged).rejects.toThrow(
      "Expected at most maxStagingBytes=399 bytes of tensors to stage, this rank's state dict holds 400",
    );
    await expect(completed).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
  });
});
