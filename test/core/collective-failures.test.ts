import { access } from "node:fs/promises";
import { join } from "node:path";
import {
  CheckpointException,
  emptyTensor,
  FileSystemReader,
  FileSystemWriter,
  load,
  type Metadata,
  save,
  shardTensor,
} from "@dcpjs/core";
import type { LoadPlan, LoadPlanner, SavePlan, SavePlanner, WriteResult } from "@dcpjs/core/extend";
import { describe, expect, it } from "vitest";
import { runRanks } from "../support/ranks.js";
import { randomTensor } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

const WORLD = 3;

/** A real FileSystemWriter that throws (a fault injected by the test) in one method on one rank. */
class FaultyWriter extends FileSystemWriter {
  #rank = -1;
  constructor(
    path: string,
    private readonly failRank: number,
    private readonly failIn: string,
  ) {
    super({ path });
  }
  #maybeFail(method: string): void {
    if (method === this.failIn && this.#rank === this.failRank)
      throw new Error(`injected fault in ${method}`);
  }
  override setUpStorageWriter(setUp: Parameters<FileSystemWriter["setUpStorageWriter"]>[0]): void {
    this.#rank = setUp.rank;
    super.setUpStorageWriter(setUp);
  }
  override async prepareLocalPlan(plan: SavePlan): Promise<SavePlan> {
    this.#maybeFail("prepareLocalPlan");
    return super.prepareLocalPlan(plan);
  }
  override prepareGlobalPlan(plans: SavePlan[]): SavePlan[] {
    this.#maybeFail("prepareGlobalPlan");
    return super.prepareGlobalPlan(plans);
  }
  override async writeData(plan: SavePlan, planner: SavePlanner): Promise<WriteResult[]> {
    this.#maybeFail("writeData");
    return super.writeData(plan, planner);
  }
  override async finish(metadata: Metadata, results: WriteResult[][]): Promise<Metadata> {
    this.#maybeFail("finish");
    return super.finish(metadata, results);
  }
}

/** A real FileSystemReader that throws (a fault injected by the test) in one method on one rank. */
class FaultyReader extends FileSystemReader {
  #rank = -1;
  constructor(
    path: string,
    private readonly failRank: number,
    private readonly failIn: string,
  ) {
    super({ path });
  }
  #maybeFail(method: string): void {
    if (method === this.failIn && this.#rank === this.failRank)
      throw new Error(`injected fault in ${method}`);
  }
  override setUpStorageReader(
    md: Metadata,
    setUp: Parameters<FileSystemReader["setUpStorageReader"]>[1],
  ): void {
    this.#rank = setUp.rank;
    super.setUpStorageReader(md, setUp);
  }
  override prepareLocalPlan(plan: LoadPlan): LoadPlan {
    this.#maybeFail("prepareLocalPlan");
    return super.prepareLocalPlan(plan);
  }
  override prepareGlobalPlan(plans: LoadPlan[]): LoadPlan[] {
    this.#maybeFail("prepareGlobalPlan");
    return super.prepareGlobalPlan(plans);
  }
  override async readData(plan: LoadPlan, planner: LoadPlanner): Promise<void> {
    this.#maybeFail("readData");
    return super.readData(plan, planner);
  }
}

const full = randomTensor("float32", [9, 3], 4);
const stateDictOf = (rank: number) => ({ w: shardTensor(full, { rank, worldSize: WORLD }), step: 1 });

function expectAllFailedNaming(settled: PromiseSettledResult<unknown>[], step: string, rank: number): void {
  expect(settled.every((s) => s.status === "rejected")).toBe(true);
  for (const s of settled) {
    const e = (s as PromiseRejectedResult).reason;
    expect(e).toBeInstanceOf(CheckpointException);
    expect(e.code).toBe("COLLECTIVE_FAILED");
    expect(e.step).toBe(step);
    expect(e.failedRanks).toEqual([rank]);
    expect(e.failures[0].message).toMatch(/injected fault/);
  }
}

const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );

describe("a failure on one rank fails every rank with a CheckpointException naming it", () => {
  it.each([
    ["prepareLocalPlan", 2, "plan"],
    ["prepareGlobalPlan", 0, "plan"],
    ["writeData", 1, "write"],
    ["finish", 0, "write"],
  ])("save: %s failing on rank %i → step %s", async (method, rank, step) => {
    const dir = await tempDir();
    const settled = await runRanks(WORLD, (pg) =>
      save(stateDictOf(pg.rank), { storageWriter: new FaultyWriter(dir, rank, method), processGroup: pg }),
    );
    expectAllFailedNaming(settled, step, rank);
    expect(await exists(join(dir, ".metadata"))).toBe(false);
  });

  it.each([
    ["prepareLocalPlan", 1, "plan"],
    ["prepareGlobalPlan", 0, "plan"],
    ["readData", 2, "read"],
  ])("load: %s failing on rank %i → step %s", async (method, rank, step) => {
    const dir = await tempDir();
    await runRanks(WORLD, (pg) => save(stateDictOf(pg.rank), { checkpointId: dir, processGroup: pg }));
    const settled = await runRanks(WORLD, (pg) =>
      load(
        { w: shardTensor(emptyTensor("float32", [9, 3]), { rank: pg.rank, worldSize: WORLD }), step: 0 },
        { storageReader: new FaultyReader(dir, rank, method), processGroup: pg },
      ),
    );
    expectAllFailedNaming(settled, step, rank);
  });

  it("names every failing rank when several fail", async () => {
    const dir = await tempDir();
    const settled = await runRanks(WORLD, (pg) =>
      save(stateDictOf(pg.rank), {
        storageWriter: new FaultyWriter(dir, pg.rank === 0 ? 99 : pg.rank, "writeData"),
        processGroup: pg,
      }),
    );
    for (const s of settled) expect((s as PromiseRejectedResult).reason.failedRanks).toEqual([1, 2]);
  });

  it("fails every rank when the global plan is invalid (overlapping shards)", async () => {
    const dir = await tempDir();
    const settled = await runRanks(2, (pg) =>
      save(
        {
          w: {
            dtype: "float32",
            shape: [4],
            shards: [{ offsets: [pg.rank], tensor: randomTensor("float32", [3]) }],
          },
        },
        { checkpointId: dir, processGroup: pg },
      ),
    );
    for (const s of settled) {
      const e = (s as PromiseRejectedResult).reason as CheckpointException;
      expect(e.step).toBe("plan");
      expect(e.failures[0]!.code).toBe("INVALID_PLAN");
      expect(e.failures[0]!.message).toMatch(/overlap/);
    }
  });
});
