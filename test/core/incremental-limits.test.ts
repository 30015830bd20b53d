import { readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  asyncSave,
  emptyTensor,
  FileSystemWriter,
  load,
  type Metadata,
  save,
  shardTensor,
  type Tensor,
} from "@dcpjs/core";
import { MAX_REFERENCED_CHECKPOINTS, METADATA_FILE, type StorageInfo } from "@dcpjs/core/extend";
import { decodeMetadata, encodeMetadata } from "@dcpjs/core/testing";
import { describe, expect, it } from "vitest";
import { droppedReferences } from "../../packages/core/src/storage/incremental-base.js";
import { allRanks } from "../support/ranks.js";
import { randomTensor, sameTensor } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

async function readMetadata(dir: string): Promise<Metadata> {
  return decodeMetadata(await readFile(join(dir, METADATA_FILE)));
}

/** A metadata of one value per referenced checkpoint `ref-{i}` (i + 1 bytes each) and one own value. */
function metadataReferencing(count: number): Metadata {
  const stateDictMetadata = new Map<string, { type: "bytes" }>();
  const storageData = new Map<string, StorageInfo>();
  for (let i = 0; i <= count; i++) {
    stateDictMetadata.set(`v${i}`, { type: "bytes" });
    storageData.set(`v${i}\u0000`, {
      relativePath: "__0_0.distcp",
      offset: 0,
      length: i + 1,
      crc32: 0,
      ...(i < count ? { baseCheckpoint: `ref-${i}` } : {}),
    });
  }
  return { version: "1.0.0", stateDictMetadata, plannerData: new Map(), storageData, storageMeta: {} };
}

describe("incremental checkpoints: limits and refusals", () => {
  it(`references at most ${MAX_REFERENCED_CHECKPOINTS} checkpoints: past it, those holding the fewest bytes are written anew`, () => {
    expect(droppedReferences(metadataReferencing(MAX_REFERENCED_CHECKPOINTS - 1), "base").size).toBe(0);
    // 66 referenced + the base itself = 67: the 3 holding the fewest bytes (ref-0..2) are dropped.
    expect([...droppedReferences(metadataReferencing(66), "base")].sort()).toEqual([
      "ref-0",
      "ref-1",
      "ref-2",
    ]);
  });

  it("writes items whose base chunking differs (saved by 2 ranks, saved again by 1)", async () => {
    const root = await tempDir();
    const w = randomTensor("float32", [8, 16], 1);
    const v = randomTensor("float32", [4], 2);
    await allRanks(2, (pg) =>
      save(
        { w: shardTensor(w, { dim: 0, rank: pg.rank, worldSize: 2 }), v },
        { checkpointId: join(root, "step-100"), processGroup: pg },
      ),
    );
    await save({ w, v }, { checkpointId: join(root, "step-110"), base: join(root, "step-100") });
    const md = await readMetadata(join(root, "step-110"));
    expect(md.storageData.get("w\u00000,0")?.baseCheckpoint).toBeUndefined(); // other chunks: written
    expect(md.storageData.get("v\u00000")?.baseCheckpoint).toBe("step-100"); // replicated, unchanged
    const dst = { w: emptyTensor("float32", [8, 16]), v: emptyTensor("float32", [4]) };
    await load(dst, { checkpointId: join(root, "step-110") });
    expect(sameTensor(dst.w, w)).toBe(true);
    // An item declared unchanged whose chunks differ fails, naming what the base holds.
    await expect(
      save({ w }, { checkpointId: join(root, "step-120"), base: join(root, "step-100"), unchanged: ["w"] }),
    ).rejects.toThrow(
      /to hold "w" at \[0, 0\] as float32 \[8, 16\], declared unchanged, .* got float32 chunks \[0, 0\]\+\[4, 16\], \[4, 0\]\+\[4, 16\]/,
    );
  });

  it("never references the checkpoint saved: items its base references there are written anew, declared or not", async () => {
    const root = await tempDir();
    const a = randomTensor("float32", [32], 1);
    const b = randomTensor("float32", [32], 2);
    await save({ a, b }, { checkpointId: join(root, "step-100") });
    const b2 = randomTensor("float32", [32], 3);
    await save({ a, b: b2 }, { checkpointId: join(root, "step-110"), base: join(root, "step-100") });
    // step-100 saved again on step-110, whose "a" lies in step-100's (replaced) files.
    await save(
      { a, b: b2 },
      { checkpointId: join(root, "step-100"), base: join(root, "step-110"), unchanged: ["a", "b"] },
    );
    const md = await readMetadata(join(root, "step-100"));
    expect(md.storageData.get("a\u00000")?.baseCheckpoint).toBeUndefined();
    expect(md.storageData.get("b\u00000")?.baseCheckpoint).toBe("step-110");
    const dst = { a: emptyTensor("float32", [32]), b: emptyTensor("float32", [32]) };
    await load(dst, { checkpointId: join(root, "step-100") });
    expect(sameTensor(dst.a, a) && sameTensor(dst.b, b2)).toBe(true);
  });

  it("asyncSave passes base through: its staged copies are compared with the base", async () => {
    const root = await tempDir();
    const big = emptyTensor("float32", [512, 1024]); // 2 MiB: staged and hashed in shared memory
    (big.data as Float32Array).fill(3);
    const small = randomTensor("float32", [8], 1);
    await save({ big, small }, { checkpointId: join(root, "step-100") });
    (small.data as Float32Array)[0] = 7;
    const { completed } = asyncSave(
      { big, small },
      { checkpointId: join(root, "step-110"), base: join(root, "step-100") },
    );
    await completed;
    const md = await readMetadata(join(root, "step-110"));
    expect(md.storageData.get("big\u00000,0")?.baseCheckpoint).toBe("step-100");
    expect(md.storageData.get("small\u00000")?.baseCheckpoint).toBeUndefined();
    const dst = { big: emptyTensor("float32", [512, 1024]), small: emptyTensor("float32", [8]) };
    await load(dst, { checkpointId: join(root, "step-110") });
    expect(sameTensor(dst.big, big) && sameTensor(dst.small, small as Tensor)).toBe(true);
  });

  it("asyncSave passes unchanged through, as fqns to its save thread and as a predicate on the calling thread", async () => {
    const root = await tempDir();
    const big = emptyTensor("float32", [512, 1024]);
    (big.data as Float32Array).fill(3);
    const small = randomTensor("float32", [8], 1);
    await save({ big, small }, { checkpointId: join(root, "step-100") });
    for (const [step, unchanged] of [
      ["step-110", ["big"]],
      ["step-120", (fqn: string) => fqn === "big"],
    ] as const) {
      await asyncSave(
        { big, small },
        { checkpointId: join(root, step), base: join(root, "step-100"), unchanged },
      ).completed;
      const md = await readMetadata(join(root, step));
      expect(md.storageData.get("big\u00000,0")?.baseCheckpoint).toBe("step-100");
    }
  });

  it("refuses base with the torch format, and a torch checkpoint as a base", async () => {
    const root = await tempDir();
    const sd = { w: randomTensor("float32", [4], 1) };
    await save(sd, { storageWriter: new FileSystemWriter({ path: join(root, "torch-1"), format: "torch" }) });
    await save(sd, { checkpointId: join(root, "step-1") });
    await expect(
      save(sd, {
        storageWriter: new FileSystemWriter({ path: join(root, "torch-2"), format: "torch" }),
        base: join(root, "step-1"),
      }),
    ).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
      message: expect.stringMatching(/Expected format "dcpjs"/),
    });
    await expect(
      save(sd, { checkpointId: join(root, "step-2"), base: join(root, "torch-1") }),
    ).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
      message: expect.stringMatching(/to be a dcpjs checkpoint, got a torch one/),
    });
  });

  it("refuses a base name that is not one path segment, and a malformed content hash", async () => {
    const root = await tempDir();
    await save({ w: randomTensor("float32", [4], 1) }, { checkpointId: join(root, "step-1") });
    const md = await readMetadata(join(root, "step-1"));
    const [key, info] = [...md.storageData][0]!;
    const withInfo = (extra: Partial<StorageInfo>) =>
      encodeMetadata({ ...md, storageData: new Map([[key, { ...info, ...extra }]]) });
    for (const base of ["..", "../x", "a/b", "a\\b"])
      expect(() => decodeMetadata(withInfo({ baseCheckpoint: base }))).toThrow(
        expect.objectContaining({ code: "UNSAFE_PATH" }),
      );
    expect(decodeMetadata(withInfo({ baseCheckpoint: "step-0" })).storageData.get(key)?.baseCheckpoint).toBe(
      "step-0",
    );
    expect(() =>
      encodeMetadata({ ...md, storageData: new Map([[key, { ...info, contentHash: "XYZ" }]]) }),
    ).toThrow(/32 lowercase hex digits/);
  });
});
