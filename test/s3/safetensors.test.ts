import { readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  createLocalProcessGroups,
  emptyTensor,
  exportSafetensors,
  load,
  loadStateDictFromKeys,
  shardTensor,
  type Tensor,
} from "@dcpjs/core";
import { parseSafetensorsHeader } from "@dcpjs/core/testing";
import { S3ReaderConstructor, S3StorageReader } from "@dcpjs/s3";
import { beforeAll, describe, expect, it } from "vitest";
import { runPeer, torchPython } from "../support/python-peer.js";
import { freshUri, recordRequests, s3Env, testClient, uploadFolder as upload } from "../support/s3.js";
import { hexOf } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

type Expected = Record<string, { dtype: string; shape: number[]; hex: string }>;

beforeAll(async () => {
  Object.assign(process.env, s3Env());
  await torchPython();
}, 600_000);

describe("safetensors on the S3 server", () => {
  it("loads a folder written by safetensors.torch.save_file from s3://, whole and resharded", async () => {
    const dir = await tempDir();
    await runPeer("safetensors_peer.py", ["write-files", dir]);
    const expected = JSON.parse(await readFile(join(dir, "expected.json"), "utf8")) as Expected;
    const uri = freshUri("hf");
    await upload(dir, uri);
    const sd = await loadStateDictFromKeys({ checkpointId: uri });
    for (const [k, e] of Object.entries(expected)) expect(hexOf(sd[k] as Tensor)).toBe(e.hex);
    await Promise.all(
      createLocalProcessGroups(3).map(async (pg) => {
        const mine = shardTensor(emptyTensor("int32", [3, 5]), { dim: 1, rank: pg.rank, worldSize: 3 });
        await load({ "t.int32": mine }, { checkpointId: uri, processGroup: pg });
        const want = shardTensor(sd["t.int32"] as Tensor, { dim: 1, rank: pg.rank, worldSize: 3 });
        expect(hexOf(mine.shards[0]!.tensor)).toBe(hexOf(want.shards[0]!.tensor));
      }),
    );
  });

  it("a partial load fetches only the needed tensor's bytes (plus the header)", async () => {
    const dir = await tempDir();
    await runPeer("safetensors_peer.py", ["write-files", dir]);
    const uri = freshUri("hf");
    await upload(dir, uri);
    const bytes = await readFile(join(dir, "model.safetensors"));
    const header = parseSafetensorsHeader(
      bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))),
      bytes.length,
      "m",
    );
    const entry = header.entries.find((e) => e.name === "t.float64")!;
    const client = testClient();
    const log = recordRequests(client);
    const target = { "t.float64": emptyTensor("float64", [3, 5]) };
    await load(target, {
      storageReader: new S3StorageReader({
        path: uri,
        client,
        readerConstructor: S3ReaderConstructor.dcpOptimized(),
      }),
    });
    const dataGets = log.filter(
      (r) => r.command === "GetObjectCommand" && r.key?.endsWith("model.safetensors"),
    );
    // two header reads (length, JSON), then exactly the tensor's range
    expect(dataGets.map((g) => g.range)).toEqual([
      "bytes=0-7",
      `bytes=8-${header.dataStart - 1}`,
      `bytes=${entry.offset}-${entry.offset + entry.length - 1}`,
    ]);
  });

  it("exports a dcpjs checkpoint to s3:// that loads back bit-exact", async () => {
    const dir = await tempDir();
    await runPeer("safetensors_peer.py", ["write-files", dir]);
    const expected = JSON.parse(await readFile(join(dir, "expected.json"), "utf8")) as Expected;
    const out = freshUri("exported");
    await exportSafetensors(dir, out, { checksums: true });
    const sd = await loadStateDictFromKeys({ checkpointId: out });
    for (const [k, e] of Object.entries(expected)) expect(hexOf(sd[k] as Tensor)).toBe(e.hex);
  });
});
