import {
  asyncSave,
  CheckpointError,
  CheckpointException,
  emptyTensor,
  FileSystemWriter,
  load,
  save,
  tensor,
} from "@dcpjs/core";
import type { SavePlan } from "@dcpjs/core/extend";
import { describe, expect, it } from "vitest";
import { runRanks } from "../support/ranks.js";
import { tempDir } from "../support/tmp.js";

/** What a promise rejected with (fails the test when it resolved). */
async function rejection(p: Promise<unknown>): Promise<CheckpointException> {
  const e = await p.then(
    () => expect.unreachable("expected a rejection"),
    (error: unknown) => error,
  );
  expect(e).toBeInstanceOf(CheckpointException);
  return e as CheckpointException;
}

/** Every rank's rejection, each checked to be a CheckpointException. */
function rejections(settled: PromiseSettledResult<unknown>[]): CheckpointException[] {
  expect(settled.map((s) => s.status)).toEqual(settled.map(() => "rejected"));
  return settled.map((s) => {
    const e = (s as PromiseRejectedResult).reason;
    expect(e).toBeInstanceOf(CheckpointException);
    return e as CheckpointException;
  });
}

/** A real FileSystemWriter whose prepareLocalPlan throws `error` on the ranks in `failRanks`. */
class ThrowingWriter extends FileSystemWriter {
  #rank = -1;
  constructor(
    path: string,
    private readonly failRanks: readonly number[],
    private readonly error: (rank: number) => unknown,
  ) {
    super({ path });
  }
  override setUpStorageWriter(setUp: Parameters<FileSystemWriter["setUpStorageWriter"]>[0]): void {
    this.#rank = setUp.rank;
    super.setUpStorageWriter(setUp);
  }
  override async prepareLocalPlan(plan: SavePlan): Promise<SavePlan> {
    if (this.failRanks.includes(this.#rank)) throw this.error(this.#rank);
    return super.prepareLocalPlan(plan);
  }
}

describe("a one-process save or load carries its root cause in code", () => {
  it("load: a missing key is MISSING_KEY, still a CheckpointException naming rank 0", async () => {
    const dir = await tempDir();
    await save({ w: tensor("float32", [2], new Float32Array([1, 2])) }, { checkpointId: dir });
    const e = await rejection(load({ w: emptyTensor("float32", [2]), extra: 1 }, { checkpointId: dir }));
    expect(e.code).toBe("MISSING_KEY");
    expect(e.failedRanks).toEqual([0]);
    expect(e.failures[0]!.code).toBe("MISSING_KEY");
    expect(e.step).toBe("plan");
  });

  it("load: a folder without .metadata is INCOMPLETE_CHECKPOINT", async () => {
    const dir = await tempDir();
    const e = await rejection(load({ w: emptyTensor("float32", [2]) }, { checkpointId: dir }));
    expect(e.code).toBe("INCOMPLETE_CHECKPOINT");
  });

  it("save: a refused state dict is INVALID_STATE_DICT; with overwrite false, CHECKPOINT_EXISTS", async () => {
    const dir = await tempDir();
    const bad = { "a.b": 1, a: { b: 2 } };
    expect((await rejection(save(bad, { checkpointId: dir }))).code).toBe("INVALID_STATE_DICT");
    await save({ a: 1 }, { checkpointId: dir });
    const again = save({ a: 2 }, { storageWriter: new FileSystemWriter({ path: dir, overwrite: false }) });
    expect((await rejection(again)).code).toBe("CHECKPOINT_EXISTS");
  });

  it("asyncSave: completed rejects with the rank's own code", async () => {
    const dir = await tempDir();
    const { completed } = asyncSave({ "a.b": 1, a: { b: 2 } }, { checkpointId: dir });
    expect((await rejection(completed)).code).toBe("INVALID_STATE_DICT");
  });

  it("a rank's plain Error (no code) leaves COLLECTIVE_FAILED", async () => {
    const dir = await tempDir();
    const writer = new ThrowingWriter(dir, [0], () => new Error("disk on fire"));
    const e = await rejection(save({ a: 1 }, { storageWriter: writer }));
    expect(e.code).toBe("COLLECTIVE_FAILED");
    expect(e.failures[0]!.message).toBe("disk on fire");
  });
});

describe("on four ranks every rank throws the same exception, with the failures' shared code", () => {
  it("load: every rank missing its key → MISSING_KEY on every rank, all four named", async () => {
    const dir = await tempDir();
    await save({ w: tensor("float32", [2], new Float32Array([1, 2])) }, { checkpointId: dir });
    const settled = await runRanks(4, (pg) =>
      load({ w: emptyTensor("float32", [2]), extra: 1 }, { checkpointId: dir, processGroup: pg }),
    );
    for (const e of rejections(settled)) {
      expect(e.code).toBe("MISSING_KEY");
      expect(e.failedRanks).toEqual([0, 1, 2, 3]);
    }
  });

  it("save: one rank of four fails → its code on every rank, naming only it", async () => {
    const dir = await tempDir();
    const denied = () => new CheckpointError("ACCESS_DENIED", "Expected write access, got 403");
    const settled = await runRanks(4, (pg) =>
      save({ a: 1 }, { storageWriter: new ThrowingWriter(dir, [2], denied), processGroup: pg }),
    );
    for (const e of rejections(settled)) {
      expect(e.code).toBe("ACCESS_DENIED");
      expect(e.failedRanks).toEqual([2]);
      expect(e.step).toBe("plan");
    }
  });

  it("save: ranks failing with different codes → COLLECTIVE_FAILED, each failure keeps its own", async () => {
    const dir = await tempDir();
    const error = (rank: number) =>
      new CheckpointError(rank === 1 ? "ACCESS_DENIED" : "IO_ERROR", `injected on rank ${rank}`);
    const settled = await runRanks(4, (pg) =>
      save({ a: 1 }, { storageWriter: new ThrowingWriter(dir, [1, 3], error), processGroup: pg }),
    );
    for (const e of rejections(settled)) {
      expect(e.code).toBe("COLLECTIVE_FAILED");
      expect(e.failures.map((f) => [f.rank, f.code])).toEqual([
        [1, "ACCESS_DENIED"],
        [3, "IO_ERROR"],
      ]);
    }
  });
});
