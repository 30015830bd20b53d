import { S3FileSystem, S3StorageWriter } from "@dcpjs/s3";
import { beforeAll, describe, expect, it } from "vitest";
import { describeCheckpointOps } from "../support/ops-suite.js";
import { freshUri, s3Env, testClient } from "../support/s3.js";

beforeAll(() => {
  Object.assign(process.env, s3Env()); // the operations build their clients from the standard variables
});

describeCheckpointOps("the S3 server", {
  fresh: async () => freshUri(),
  fs: () => new S3FileSystem({ client: testClient() }),
  writer: (path) => new S3StorageWriter({ path, client: testClient() }),
});

describe("dcp cp across backends", () => {
  it("folder → S3 → folder, bit-exact; a second copy to S3 transfers nothing", async () => {
    const { join } = await import("node:path");
    const { copyCheckpoint } = await import("@dcpjs/cli");
    const { load, save } = await import("@dcpjs/core");
    const { tempDir } = await import("../support/tmp.js");
    const { seededState, seededTarget, whichSeed } = await import("../support/tensors.js");
    const local = join(await tempDir(), "src");
    await save(seededState(5), { checkpointId: local });
    const remote = freshUri("copied");
    expect((await copyCheckpoint(local, remote)).copied.length).toBeGreaterThan(0);
    expect((await copyCheckpoint(local, remote)).bytes).toBe(0);
    const back = join(await tempDir(), "back");
    await copyCheckpoint(remote, back);
    const sd = seededTarget();
    await load(sd, { checkpointId: back });
    expect(whichSeed(sd, [5])).toBe(5);
  });
});
