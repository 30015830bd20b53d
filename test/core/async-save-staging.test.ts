import {
  asyncSave,
  emptyTensor,
  FileSystemWriter,
  load,
  shardTensor,
  type Tensor,
  tensor,
  tensorBytes,
} from "@dcpjs/core";
import type { SavePlan, SavePlanner, WriteResult } from "@dcpjs/core/extend";
import { STAGING_POOL_IDLE_MS, stagingPoolFor } from "@dcpjs/core/testing";
import { beforeEach, describe, expect, it } from "vitest";
import { randomTensor, sameTensor } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

const pool = stagingPoolFor(undefined);

/** A tensor whose bytes lie in a SharedArrayBuffer of its own. */
function sharedTensor(source: Tensor): Tensor {
  const data = new Uint8Array(new SharedArrayBuffer(source.data.byteLength));
  data.set(tensorBytes(source));
  return { dtype: source.dtype, shape: [...source.shape], data };
}

/** A tensor whose bytes lie in an ordinary ArrayBuffer of its own. */
function plainTensor(source: Tensor): Tensor {
  const data = new Uint8Array(source.data.byteLength);
  data.set(tensorBytes(source));
  return { dtype: source.dtype, shape: [...source.shape], data };
}

/** A FileSystemWriter that waits for `gate` before writing. */
class GatedWriter extends FileSystemWriter {
  constructor(
    path: string,
    private readonly gate: Promise<void>,
  ) {
    super({ path });
  }
  override async writeData(plan: SavePlan, planner: SavePlanner): Promise<WriteResult[]> {
    await this.gate;
    return super.writeData(plan, planner);
  }
}

async function loadBack(dir: string, like: Record<string, Tensor>): Promise<Record<string, Tensor>> {
  const target: Record<string, Tensor> = {};
  for (const [k, t] of Object.entries(like)) target[k] = emptyTensor(t.dtype, t.shape);
  await load(target, { checkpointId: dir });
  return target;
}

beforeEach(() => pool.letGo());

describe("asyncSave's staging pool", () => {
  it("allocates one buffer for many saves of the same shapes, and saves each save's values", async () => {
    const before = pool.allocations;
    // Odd sizes and mixed dtypes: every view must stay aligned for its dtype.
    const shapes = {
      a: ["uint8", [3, 7]],
      b: ["float64", [33, 5]],
      c: ["int16", [1]],
      d: ["float32", [0]],
    } as const;
    for (let i = 1; i <= 5; i++) {
      const sd: Record<string, Tensor> = {};
      for (const [k, [dtype, shape]] of Object.entries(shapes)) sd[k] = randomTensor(dtype, shape, i);
      const dir = await tempDir();
      const { staged, completed } = asyncSave(sd, { checkpointId: dir });
      await staged;
      for (const t of Object.values(sd)) tensorBytes(t).fill(0x5a);
      await completed;
      const back = await loadBack(dir, sd);
      for (const [k, [dtype, shape]] of Object.entries(shapes))
        expect(sameTensor(back[k]!, randomTensor(dtype, shape, i))).toBe(true);
      // 21 + 1320 + 2 bytes, each view at a multiple of 64 bytes.
      expect(pool.bytesHeld).toBe(64 + 1344 + 64);
    }
    expect(pool.allocations - before).toBe(1);
  });

  it("replaces its buffer when a later save needs more, or less than half, and lets it go when idle", async () => {
    const MiB = 1024 * 1024;
    const save = async (bytes: number) => {
      await asyncSave({ w: emptyTensor("uint8", [bytes]) }, { checkpointId: await tempDir() }).completed;
    };
    const before = pool.allocations;
    await save(MiB);
    expect(pool.bytesHeld).toBe(MiB);
    await save(MiB - 4096); // fits, and more than half: reused
    expect(pool.allocations - before).toBe(1);
    await save(2 * MiB); // larger: the 1 MiB buffer is let go
    expect(pool.bytesHeld).toBe(2 * MiB);
    await save(MiB / 4); // far smaller: the 2 MiB buffer is let go
    expect(pool.bytesHeld).toBe(MiB / 4);
    expect(pool.allocations - before).toBe(3);
    await asyncSave(
      { w: emptyTensor("uint8", [100]) },
      { checkpointId: await tempDir(), maxStagingBytes: 128 },
    ).completed; // a limit below the kept buffer: let go
    expect(pool.bytesHeld).toBe(128);
    expect(STAGING_POOL_IDLE_MS).toBeGreaterThan(0);
    pool.letGo(); // what the idle timer does after STAGING_POOL_IDLE_MS
    expect(pool.bytesHeld).toBe(0);
  });

  it("keeps one pool per process group", async () => {
    const a = stagingPoolFor({});
    const b = stagingPoolFor({});
    expect(a).not.toBe(b);
    expect(a).not.toBe(pool);
  });
});

describe('asyncSave with staging: "none"', () => {
  it("saves tensors in shared memory from where they lie, and still copies the others", async () => {
    const dir = await tempDir();
    let open!: () => void;
    const gate = new Promise<void>((r) => {
      open = r;
    });
    const shared = sharedTensor(randomTensor("float32", [16, 16], 1));
    const plain = plainTensor(randomTensor("float32", [16, 16], 2));
    expect(plain.data.buffer).toBeInstanceOf(ArrayBuffer);
    const shard = shardTensor(sharedTensor(randomTensor("int32", [8, 4], 3)), { rank: 0, worldSize: 1 });
    const before = pool.allocations;
    const { staged, completed } = asyncSave(
      { shared, plain, shard },
      { storageWriter: new GatedWriter(dir, gate), staging: "none", maxStagingBytes: 1024 },
    );
    await staged;
    expect(pool.bytesHeld).toBe(1024); // only `plain` was copied; the limit counts it alone
    expect(pool.allocations - before).toBe(1);
    // Broken promises, to see where the save reads from: the shared tensors' new bytes are saved.
    tensorBytes(shared).fill(1);
    tensorBytes(shard.shards[0]!.tensor).fill(2);
    tensorBytes(plain).fill(3);
    open();
    await completed;
    const back = await loadBack(dir, { shared, plain, shard: emptyTensor("int32", [8, 4]) });
    expect(sameTensor(back.shared!, shared)).toBe(true);
    expect(sameTensor(back.shard!, shard.shards[0]!.tensor)).toBe(true);
    expect(sameTensor(back.plain!, randomTensor("float32", [16, 16], 2))).toBe(true);
  });

  it("copies nothing when every tensor is in shared memory", async () => {
    const dir = await tempDir();
    const w = sharedTensor(randomTensor("float64", [64, 64], 4));
    const before = pool.allocations;
    await asyncSave({ w, step: 3 }, { checkpointId: dir, staging: "none", maxStagingBytes: 0 }).completed;
    expect(pool.allocations).toBe(before);
    expect(pool.bytesHeld).toBe(0);
    const target = { w: emptyTensor("float64", [64, 64]), step: 0 };
    await load(target, { checkpointId: dir });
    expect(sameTensor(target.w, w)).toBe(true);
    expect(target.step).toBe(3);
  });

  it('copies every tensor with the default, "copy"', async () => {
    const w = sharedTensor(tensor("float32", [2], new Float32Array([1, 2])));
    await expect(
      asyncSave({ w }, { checkpointId: await tempDir(), maxStagingBytes: 7 }).staged,
    ).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
  });
});
