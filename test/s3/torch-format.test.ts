import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { flattenStateDict, loadStateDictFromKeys, type Tensor, tensorBytes } from "@dcpjs/core";
import { S3ReaderConstructor, S3StorageReader } from "@dcpjs/s3";
import { beforeAll, describe, expect, it } from "vitest";
import { runPeer, torchPython } from "../support/python-peer.js";
import { freshUri, s3Env, testClient, uploadFolder } from "../support/s3.js";
import { tempDir } from "../support/tmp.js";

beforeAll(async () => {
  Object.assign(process.env, s3Env());
  await torchPython();
}, 600_000);

describe("PyTorch DCP checkpoints on the S3 server", () => {
  it.each([
    ["sequential", () => S3ReaderConstructor.sequential()],
    ["dcpOptimized", () => S3ReaderConstructor.dcpOptimized()],
  ])("a torch 2.13 checkpoint loads bit-exact through the %s reader", async (_name, reader) => {
    const root = await tempDir();
    await runPeer("torch_peer.py", ["save", join(root, "ckpt"), "threads"]);
    const expected = JSON.parse(await readFile(join(root, "expected-threads.json"), "utf8")) as Record<
      string,
      { hex?: string; value?: unknown }
    >;
    const uri = freshUri("torch");
    await uploadFolder(join(root, "ckpt"), uri);
    const sd = await loadStateDictFromKeys({
      storageReader: new S3StorageReader({ path: uri, client: testClient(), readerConstructor: reader() }),
    });
    const flat = flattenStateDict(sd).flat;
    for (const [fqn, e] of Object.entries(expected)) {
      if (e.hex !== undefined)
        expect(Buffer.from(tensorBytes(flat.get(fqn) as Tensor)).toString("hex")).toBe(e.hex);
      else expect(flat.get(fqn)).toEqual(e.value);
    }
  });
});
