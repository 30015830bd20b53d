import { join } from "node:path";
import {
  type ConvertBatch,
  convertCheckpoint,
  loadStateDictFromKeys,
  type StateDict,
  save,
  type Tensor,
} from "@dcpjs/core";
import { S3StorageWriter } from "@dcpjs/s3";
import { beforeAll, describe, expect, it } from "vitest";
import { freshUri, listKeys, s3Env, testClient } from "../support/s3.js";
import { hexOf, randomTensor } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

beforeAll(() => {
  Object.assign(process.env, s3Env());
});

function flat(sd: StateDict, prefix = "", out: Record<string, string> = {}): Record<string, string> {
  for (const [k, v] of Object.entries(sd as Record<string, unknown>)) {
    const fqn = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === "object" && "dtype" in v) out[fqn] = `${(v as Tensor).dtype}:${hexOf(v as Tensor)}`;
    else flat(v as StateDict, fqn, out);
  }
  return out;
}

describe("convertCheckpoint on the S3 server", () => {
  it("folder → s3 torch → s3 safetensors → folder dcpjs, in batches, bit-exact", async () => {
    const src = join(await tempDir(), "src");
    await save(
      {
        model: { a: randomTensor("float32", [128, 64], 1), b: randomTensor("bfloat16", [300], 2) },
        c: randomTensor("int64", [500], 3),
      },
      { checkpointId: src },
    );
    const want = flat(await loadStateDictFromKeys({ checkpointId: src }));
    const torch = freshUri("convert-torch");
    const batches: ConvertBatch[] = [];
    await convertCheckpoint(src, torch, {
      to: "torch",
      windowBytes: 8192,
      storageWriter: new S3StorageWriter({ path: torch, client: testClient(), format: "torch" }),
      onBatch: (b) => {
        batches.push(b);
      },
    });
    expect(batches.map((b) => b.keys)).toEqual([["model.a"], ["model.b", "c"]]);
    const keys = await listKeys(testClient(), torch);
    expect(keys.filter((k) => k.endsWith(".distcp")).length).toBe(2);
    const st = freshUri("convert-st");
    await convertCheckpoint(torch, st, { to: "safetensors", windowBytes: 8192 });
    const back = join(await tempDir(), "back");
    await convertCheckpoint(st, back, { windowBytes: 8192 });
    expect(flat(await loadStateDictFromKeys({ checkpointId: back }))).toEqual(want);
  });
});
