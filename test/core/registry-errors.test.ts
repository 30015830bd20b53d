import "@dcpjs/s3";
import { createStorageReader, emptyTensor, FileSystemWriter, load, save } from "@dcpjs/core";
import { registerStorageBackend, unregisterStorageBackend } from "@dcpjs/core/extend";
import { afterEach, describe, expect, it } from "vitest";

describe("a checkpoint id its registered backend refuses says what is wrong with it", () => {
  afterEach(() => {
    unregisterStorageBackend("mem");
  });

  it.each(["s3://", "s3:///prefix"])(
    "%s: Expected s3://BUCKET/PREFIX, not 'install @dcpjs/s3'",
    async (id) => {
      const expected = {
        code: "INVALID_ARGUMENT",
        message: expect.stringMatching(/^Expected s3:\/\/BUCKET\/PREFIX, got /),
      };
      await expect(save({ a: 1 }, { checkpointId: id })).rejects.toMatchObject(expected);
      await expect(load({ w: emptyTensor("float32", [1]) }, { checkpointId: id })).rejects.toMatchObject(
        expected,
      );
      await expect(createStorageReader(id)).rejects.toThrow(`Expected s3://BUCKET/PREFIX, got ${id}`);
      await expect(save({ a: 1 }, { checkpointId: id })).rejects.not.toThrow(/install/);
    },
  );

  it("a backend without checkpointIdForm is named by its scheme", async () => {
    registerStorageBackend({
      name: "mem",
      validateCheckpointId: (id) => /^mem:\/\/[a-z]+/.test(id),
      fileSystem: () => {
        throw new Error("unused");
      },
      createWriter: (path) => new FileSystemWriter({ path }),
      createReader: () => {
        throw new Error("unused");
      },
    });
    await expect(save({ a: 1 }, { checkpointId: "mem://" })).rejects.toThrow(
      "Expected mem://…, got mem:// (the mem backend does not take it)",
    );
  });

  it.each(["https://example.org/ckpt", "http://127.0.0.1:9/ckpt", "hf://org/model"])(
    "%s without @dcpjs/http imported: says to install and import it",
    async (id) => {
      await expect(load({ w: emptyTensor("float32", [1]) }, { checkpointId: id })).rejects.toMatchObject({
        code: "INVALID_ARGUMENT",
        message: expect.stringContaining('install @dcpjs/http and import it once (import "@dcpjs/http")'),
      });
    },
  );
});
