import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { emptyTensor, load, type Tensor } from "@dcpjs/core";
import { S3ReaderConstructor, S3StorageReader } from "@dcpjs/s3";
import { beforeAll, describe, expect, it } from "vitest";
import { runPeer, torchPython } from "../support/python-peer.js";
import { freshUri, s3Env, testClient, uploadFolder } from "../support/s3.js";
import { hexOf } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

beforeAll(async () => {
  Object.assign(process.env, s3Env());
  await torchPython();
}, 600_000);

describe("large torch items on the S3 server", () => {
  it.each([
    // reads each large contiguous item's frame, then its payload straight into the tensor
    ["sequential", () => S3ReaderConstructor.sequential()],
    // one GET per run of small items (staged, then unframed); a lone large item's frame, then its payload in place
    ["dcpOptimized", () => S3ReaderConstructor.dcpOptimized()],
  ])(
    "load bit-exact through the %s reader (contiguous, bf16, a view of a larger storage, transposed)",
    async (_name, reader) => {
      const root = await tempDir();
      await runPeer("torch_large_peer.py", ["save", join(root, "ckpt")]);
      const expected = JSON.parse(await readFile(join(root, "expected.json"), "utf8")) as Record<
        string,
        { dtype: "float32" | "bfloat16"; shape: number[]; hex: string }
      >;
      const uri = freshUri("torch-large");
      await uploadFolder(join(root, "ckpt"), uri);
      const target = Object.fromEntries(
        Object.entries(expected).map(([k, e]) => [k, emptyTensor(e.dtype, e.shape)]),
      ) as Record<string, Tensor>;
      await load(target, {
        storageReader: new S3StorageReader({ path: uri, client: testClient(), readerConstructor: reader() }),
      });
      for (const [k, e] of Object.entries(expected)) expect(hexOf(target[k]!), k).toBe(e.hex);
    },
  );
});
