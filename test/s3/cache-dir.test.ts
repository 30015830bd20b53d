import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { CheckpointError } from "@dcpjs/core";
import { S3StorageReader } from "@dcpjs/s3";
import { describe, expect, it } from "vitest";
import { tempDir } from "../support/tmp.js";

describe("cacheDir is checked up front", () => {
  it("a file, or a path through a file, is INVALID_ARGUMENT naming it; a missing folder or an existing one is accepted", async () => {
    const dir = await tempDir();
    const file = join(dir, "a-file");
    await writeFile(file, "not a folder");
    for (const cacheDir of [file, join(file, "cache")]) {
      let error: unknown;
      try {
        new S3StorageReader({ path: "s3://bucket/ckpt", cacheDir });
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(CheckpointError);
      expect(error).toMatchObject({ code: "INVALID_ARGUMENT" });
      expect((error as Error).message).toContain(cacheDir);
    }
    await mkdir(join(dir, "existing"));
    for (const cacheDir of [join(dir, "existing"), join(dir, "missing", "cache")])
      expect(new S3StorageReader({ path: "s3://bucket/ckpt", cacheDir }).readCache?.dir).toBe(cacheDir);
  });
});
