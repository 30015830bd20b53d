import { emptyTensor, load, save, type Tensor } from "@dcpjs/core";
import { S3StorageReader, S3StorageWriter } from "@dcpjs/s3";
import { describe, expect, it } from "vitest";
import { freshUri, listKeys, testClient } from "../support/s3.js";
import { randomTensor, sameTensor } from "../support/tensors.js";

describe("incremental checkpoints on S3", () => {
  it("uploads only the changed items and loads through the references to the base's objects", async () => {
    const client = testClient();
    const base = freshUri("step-100");
    const next = base.replace(/step-100$/, "step-110");
    const frozen = randomTensor("float32", [256, 1024], 1); // 1 MiB, unchanged
    const first = { frozen, head: randomTensor("float32", [64], 2), step: 100 };
    await save(first, { storageWriter: new S3StorageWriter({ path: base, client }) });
    const second = { frozen, head: randomTensor("float32", [64], 3), step: 110 };
    await save(second, { storageWriter: new S3StorageWriter({ path: next, client }), base });

    // The new checkpoint's own objects hold the changed items alone.
    const keys = await listKeys(client, next);
    expect(keys.filter((k) => k.endsWith(".distcp"))).toHaveLength(1);
    const dst = { frozen: emptyTensor("float32", [256, 1024]), head: emptyTensor("float32", [64]), step: 0 };
    await load(dst, { storageReader: new S3StorageReader({ path: next, client }) });
    expect(sameTensor(dst.frozen, frozen)).toBe(true);
    expect(sameTensor(dst.head, second.head as Tensor)).toBe(true);
    expect(dst.step).toBe(110);

    // A base that is not there: NOT_FOUND naming it.
    const missing = base.replace(/step-100$/, "step-090");
    await expect(
      save(second, {
        storageWriter: new S3StorageWriter({ path: next.replace(/110$/, "120"), client }),
        base: missing,
      }),
    ).rejects.toMatchObject({ code: "NOT_FOUND", message: expect.stringContaining("step-090") });
  });
});
