// @dcpjs/opfs outside a page (in Node): opfs:// ids route to its backend, ids normalise, and a
// call where there is no OPFS fails with IO_ERROR naming what is missing.
import { CheckpointError, createStorageWriter, latestCheckpoint, save, tensor } from "@dcpjs/core";
import { isOpfsId, normalizeOpfsPath, OpfsFileSystem, opfsSegments, opfsStorageBackend } from "@dcpjs/opfs";
import { describe, expect, it } from "vitest";

describe("opfs:// ids", () => {
  it("are taken by the opfs backend only with the scheme, and normalise", () => {
    expect(isOpfsId("opfs://ckpt/step-5")).toBe(true);
    expect(isOpfsId("OPFS://ckpt")).toBe(true);
    expect(isOpfsId("./ckpt")).toBe(false);
    expect(opfsStorageBackend.validateCheckpointId("s3://b/k")).toBe(false);
    expect(normalizeOpfsPath("OPFS://a//b/./c/")).toBe("opfs://a/b/c");
    expect(opfsSegments("opfs://")).toEqual([]);
    expect(() => opfsSegments("opfs://a/../b")).toThrow(CheckpointError);
    expect(() => opfsSegments("/tmp/a")).toThrow(/Expected an opfs:\/\/FOLDER/);
  });

  it("route save and latestCheckpoint to OPFS, which Node lacks: IO_ERROR naming it", async () => {
    const writer = await createStorageWriter("opfs://ckpt/step-1");
    expect((writer as unknown as { fs: unknown }).fs).toBeInstanceOf(OpfsFileSystem);
    const error = await save(
      { w: tensor("float32", [2], new Float32Array([1, 2])) },
      {
        checkpointId: "opfs://ckpt/step-1",
      },
    ).catch((e: unknown) => e);
    expect(String((error as Error).message)).toMatch(/navigator\.storage\.getDirectory\(\)/);
    await expect(latestCheckpoint("opfs://ckpt")).rejects.toMatchObject({ code: "IO_ERROR" });
  });
});
