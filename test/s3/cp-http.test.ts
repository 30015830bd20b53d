// `dcp cp hf://org/model s3://bucket/model`: a Hub repository (the loopback Hub emulation of
// test/support/http-file-server.ts) copied to the suite's S3 server, then loaded from S3.
import { readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { exportSafetensors, loadStateDictFromKeys, save, type Tensor } from "@dcpjs/core";
import { copyCheckpoint } from "@dcpjs/core/ops";
import "@dcpjs/http";
import "@dcpjs/s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type HttpFileServer, startHttpFileServer } from "../support/http-file-server.js";
import { freshUri, listKeys, s3Env, testClient } from "../support/s3.js";
import { hexOf, randomTensor } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

const servers: HttpFileServer[] = [];
let before: string | undefined;
beforeAll(() => {
  Object.assign(process.env, s3Env()); // the operations build their clients from the standard variables
  before = process.env.HF_ENDPOINT;
});
afterAll(async () => {
  if (before === undefined) delete process.env.HF_ENDPOINT;
  else process.env.HF_ENDPOINT = before;
  await Promise.all(servers.map((s) => s.close()));
});

describe("dcp cp hf://org/model s3://bucket/model", () => {
  it("copies the repository (shards, sidecar, config, index last) and loads it from S3 byte-exact; again copies nothing", async () => {
    const root = await tempDir();
    const repo = join(root, "hub", "org", "model");
    const sd: Record<string, Tensor> = {
      "layer.0": randomTensor("bfloat16", [1024, 1024], 1),
      "layer.1": randomTensor("float32", [1024, 1024], 2),
      big: randomTensor("float32", [2560, 1024], 3), // 10 MiB: two pieces
      small: randomTensor("int64", [10], 4),
    };
    await save(sd, { checkpointId: join(root, "ckpt") });
    await exportSafetensors(join(root, "ckpt"), repo, { maxShardSize: 4 * 1024 * 1024, checksums: true });
    await writeFile(join(repo, "config.json"), JSON.stringify({ model_type: "test" }));
    await writeFile(join(repo, "tokenizer_config.json"), "{}");
    const cdn = await startHttpFileServer({ root: join(root, "hub"), cdn: true });
    servers.push(cdn);
    const hub = await startHttpFileServer({
      root: join(root, "hub"),
      hub: { commit: "0123456789abcdef0123456789abcdef01234567", cdnOrigin: cdn.origin },
    });
    servers.push(hub);
    process.env.HF_ENDPOINT = hub.origin;
    const dst = freshUri("model");
    const r = await copyCheckpoint("hf://org/model", dst, { concurrency: 4 });
    expect(r.layout).toBe("safetensors");
    expect(r.verifiedBy).toBe("checksums");
    expect(r.files.at(-1)).toBe("model.safetensors.index.json");
    expect(await listKeys(testClient(), dst)).toEqual((await readdir(repo)).sort());
    const got = await loadStateDictFromKeys({ checkpointId: dst, keys: Object.keys(sd) });
    for (const [k, t] of Object.entries(sd)) expect(hexOf(got[k] as Tensor), k).toBe(hexOf(t));
    const again = await copyCheckpoint("hf://org/model", dst);
    expect(again.copied).toEqual([]);
    expect(again.bytes).toBe(0);
  });
});
