import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { LocalFileSystem, type Metadata, MetadataError } from "@dcpjs/core";
import { checkpointFormats, decodeCheckpointMetadata, validateMetadata } from "@dcpjs/core/extend";
import { encodeMetadata, encodeTorchMetadata, readCheckpointMetadata } from "@dcpjs/core/testing";
import { describe, expect, it } from "vitest";
import { failureOf } from "../support/failure.js";
import { tempDir } from "../support/tmp.js";

/** A one-tensor metadata whose chunk is `chunk` rows of a [4, 2] float32 tensor, stored as dcpjs stores it. */
function oneTensor(chunkRows: number): Metadata {
  const chunk = { offsets: [0, 0], sizes: [chunkRows, 2] };
  return {
    version: "1.0.0",
    stateDictMetadata: new Map([
      ["w", { type: "tensor", properties: { dtype: "float32" }, size: [4, 2], chunks: [chunk] }],
    ]),
    plannerData: new Map([["w", ["w"]]]),
    storageData: new Map([
      ["w\u00000,0", { relativePath: "__0_0.distcp", offset: 0, length: chunkRows * 8, crc32: 0 }],
    ]),
    storageMeta: {},
  };
}

describe("one validateMetadata for every checkpoint format", () => {
  it("the built-ins are asked PyTorch DCP first (its magic), then dcpjs (every other .metadata), then safetensors", () => {
    expect(checkpointFormats().map((f) => f.name)).toEqual(["torch", "dcpjs", "safetensors"]);
  });

  it("a chunk outside its tensor is refused in the same words from dcpjs's msgpack and from PyTorch's pickle", () => {
    const bad = oneTensor(5);
    const messages = [encodeMetadata(bad), encodeTorchMetadata(bad)].map((bytes) => {
      const error = (() => {
        try {
          decodeCheckpointMetadata(bytes);
        } catch (e) {
          return e;
        }
      })();
      expect(error).toBeInstanceOf(MetadataError);
      expect((error as MetadataError).code).toBe("MALFORMED_METADATA");
      return (error as Error).message.replace(/^Malformed [^:]*: /, "");
    });
    expect(messages[0]).toBe('chunk at [0, 0] of size [5, 2] lies outside "w" [4, 2]');
    expect(messages[1]).toBe(messages[0]);
    expect(() => validateMetadata(oneTensor(4))).not.toThrow();
  });

  it("refuses escaping paths, __proto__ and unstored chunks with the same codes whichever decoder made them", () => {
    const good = oneTensor(4);
    const escaping = {
      ...good,
      storageData: new Map([
        ["w\u00000,0", { ...good.storageData.get("w\u00000,0")!, relativePath: "../x" }],
      ]),
    };
    expect(() => validateMetadata(escaping)).toThrow(expect.objectContaining({ code: "UNSAFE_PATH" }));
    const proto = oneTensor(4);
    (proto.plannerData as Map<string, unknown>).set("w", ["__proto__", "x"]);
    expect(() => validateMetadata(proto, { what: "x" })).toThrow(/Malformed x: .*__proto__/);
    const unstored = { ...oneTensor(4), storageData: new Map() };
    expect(() => validateMetadata(unstored)).toThrow(/"w" has a chunk with no storage entry/);
  });

  it("a folder no format reads is INCOMPLETE_CHECKPOINT; a safetensors folder is found by its format", async () => {
    const dir = await tempDir();
    const fs = new LocalFileSystem();
    expect(await failureOf(readCheckpointMetadata(fs, dir))).toMatchObject({ code: "INCOMPLETE_CHECKPOINT" });
    await mkdir(dir, { recursive: true });
    const json = Buffer.from('{"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}');
    const header = Buffer.alloc(8);
    header.writeBigUInt64LE(BigInt(json.length));
    await writeFile(join(dir, "model.safetensors"), Buffer.concat([header, json, Buffer.from([1, 2])]));
    const read = await readCheckpointMetadata(fs, dir);
    expect(read.committed).toBeUndefined();
    expect(read.metadata.storageMeta.format).toBe("safetensors");
    expect(read.metadata.stateDictMetadata.get("w")).toMatchObject({ size: [2] });
  });
});
