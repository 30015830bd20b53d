import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { loadStateDictFromKeys, type Tensor, tensorBytes } from "@dcpjs/core";
import { flattenStateDict } from "@dcpjs/core/extend";
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

  it('format: "torch" on S3 with a hex prefix strategy writes the layout torch reads (2 ranks; torch loads a copy of the objects bit-exact)', async () => {
    const { GetObjectCommand } = await import("@aws-sdk/client-s3");
    const { mkdir, writeFile } = await import("node:fs/promises");
    const { dirname } = await import("node:path");
    const { createLocalProcessGroups, save, shardTensor } = await import("@dcpjs/core");
    const { HexPrefixStrategy, parseS3Uri, S3StorageWriter } = await import("@dcpjs/s3");
    const { randomTensor } = await import("../support/tensors.js");
    const { listKeys } = await import("../support/s3.js");
    const root = await tempDir();
    const full = { w: randomTensor("float32", [6, 4], 1), b: randomTensor("bfloat16", [3], 2) };
    const uri = freshUri("torch-written");
    const client = testClient();
    await Promise.all(
      createLocalProcessGroups(2).map((pg) =>
        save(
          { w: shardTensor(full.w, { rank: pg.rank, worldSize: 2 }), b: full.b, step: 9 },
          {
            storageWriter: new S3StorageWriter({
              path: uri,
              client,
              format: "torch",
              prefixStrategy: new HexPrefixStrategy(),
            }),
            processGroup: pg,
          },
        ),
      ),
    );
    const keys = await listKeys(client, uri);
    expect(keys.some((k) => /^[0-9a-f]{10}\/__1_0\.[0-9a-f]{12}\.distcp$/.test(k))).toBe(true);
    const local = join(root, "copy");
    const { bucket, key } = parseS3Uri(uri);
    for (const k of keys) {
      const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: `${key}/${k}` }));
      await mkdir(dirname(join(local, k)), { recursive: true });
      await writeFile(join(local, k), await got.Body!.transformToByteArray());
    }
    const expectedFile = join(root, "expected.json");
    await writeFile(
      expectedFile,
      JSON.stringify({
        w: { dtype: "float32", shape: [6, 4], hex: hexOf(full.w) },
        b: { dtype: "bfloat16", shape: [3], hex: hexOf(full.b) },
        step: { value: 9 },
      }),
    );
    const r = await runPeer<{ mismatches: string[] }>("torch_peer.py", ["check", local, expectedFile]);
    expect(r.mismatches).toEqual([]);
  });
});
