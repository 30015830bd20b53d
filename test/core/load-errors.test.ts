import {
  CheckpointException,
  DefaultLoadPlanner,
  emptyTensor,
  FileSystemWriter,
  load,
  save,
} from "@dcpjs/core";
import { describe, expect, it } from "vitest";
import { randomTensor, sameTensor } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

async function failure(p: Promise<unknown>) {
  const e = await p.then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(e).toBeInstanceOf(CheckpointException);
  return (e as CheckpointException).failures[0]!;
}

describe("load planning errors", () => {
  it("fails a strict load on a key the checkpoint lacks, and skips it with allowPartialLoad", async () => {
    const dir = await tempDir();
    const w = randomTensor("float32", [4]);
    await save({ w }, { checkpointId: dir });
    const f = await failure(load({ w: emptyTensor("float32", [4]), extra: 1 }, { checkpointId: dir }));
    expect(f.code).toBe("MISSING_KEY");
    expect(f.message).toBe("Missing key in checkpoint state_dict: extra.");

    const sd = { w: emptyTensor("float32", [4]), extra: 1 };
    await load(sd, { checkpointId: dir, planner: new DefaultLoadPlanner({ allowPartialLoad: true }) });
    expect(sameTensor(sd.w, w)).toBe(true);
    expect(sd.extra).toBe(1);
  });

  it("skips a key the checkpoint lacks with load's own allowPartialLoad (DCP's allow_partial_load), and refuses it beside a planner", async () => {
    const dir = await tempDir();
    const w = randomTensor("float32", [4]);
    await save({ w }, { checkpointId: dir });
    const sd = { w: emptyTensor("float32", [4]), extra: 1 };
    await load(sd, { checkpointId: dir, allowPartialLoad: true });
    expect(sameTensor(sd.w, w)).toBe(true);
    expect(sd.extra).toBe(1);

    const strict = await failure(
      load({ w: emptyTensor("float32", [4]), extra: 1 }, { checkpointId: dir, allowPartialLoad: false }),
    );
    expect(strict.code).toBe("MISSING_KEY");

    await expect(
      load(sd, { checkpointId: dir, planner: new DefaultLoadPlanner(), allowPartialLoad: true }),
    ).rejects.toMatchObject({ code: "INVALID_ARGUMENT", message: expect.stringContaining("got both") });
  });

  it("loads a subset of a checkpoint (weights only)", async () => {
    const dir = await tempDir();
    const w = randomTensor("float32", [4]);
    await save({ model: { w }, optim: { m: randomTensor("float32", [4]) } }, { checkpointId: dir });
    const sd = { model: { w: emptyTensor("float32", [4]) } };
    await load(sd, { checkpointId: dir });
    expect(sameTensor(sd.model.w, w)).toBe(true);
  });

  it("reports a size mismatch with both shapes and the fqn", async () => {
    const dir = await tempDir();
    await save({ w: randomTensor("float32", [4, 2]) }, { checkpointId: dir });
    const f = await failure(load({ w: emptyTensor("float32", [2, 4]) }, { checkpointId: dir }));
    expect(f.code).toBe("SIZE_MISMATCH");
    expect(f.message).toBe("Size mismatch between saved [4, 2] and current: [2, 4] for w");
  });

  it("reports a dtype mismatch under strictDtype (by default the target loads cast, as DCP)", async () => {
    const dir = await tempDir();
    await save({ w: randomTensor("float32", [4]) }, { checkpointId: dir });
    const f = await failure(load({ w: emptyTensor("int32", [4]) }, { checkpointId: dir, strictDtype: true }));
    expect(f.code).toBe("DTYPE_MISMATCH");
    expect(f.message).toMatch(/saved float32 and current: int32 for w/);
  });

  it("reports a tensor where a value was saved", async () => {
    const dir = await tempDir();
    await save({ step: 3 }, { checkpointId: dir });
    const f = await failure(load({ step: emptyTensor("int64", []) }, { checkpointId: dir }));
    expect(f.code).toBe("INVALID_STATE_DICT");
  });
});

describe("the overwrite guard", () => {
  it("overwrites by default and refuses with overwrite=false", async () => {
    const dir = await tempDir();
    await save({ a: 1 }, { checkpointId: dir });
    await save({ a: 2 }, { checkpointId: dir });
    const sd = { a: 0 };
    await load(sd, { checkpointId: dir });
    expect(sd.a).toBe(2);

    const f = await failure(
      save({ a: 3 }, { storageWriter: new FileSystemWriter({ path: dir, overwrite: false }) }),
    );
    expect(f.code).toBe("CHECKPOINT_EXISTS");
    expect(f.message).toMatch(/^Checkpoint already exists/);
    await load(sd, { checkpointId: dir });
    expect(sd.a).toBe(2);
  });
});
