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
    const { copyCheckpoint } = await import("@dcpjs/core/ops");
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

describe("dcp gc and a save in flight on S3", () => {
  it("gc at grace 0 keeps the multipart upload of a save whose lease is live, and aborts one without a lease", async () => {
    const { collectGarbage } = await import("@dcpjs/core/ops");
    const { saveLeaseFile, writeWholeFile } = await import("@dcpjs/core/testing");
    const { ListMultipartUploadsCommand } = await import("@aws-sdk/client-s3");
    const { parseS3Uri } = await import("@dcpjs/s3");
    const uri = freshUri();
    const fs = new S3FileSystem({ client: testClient(), clientConfig: { partSize: 5 * 1024 * 1024 } });
    const uploads = async () => {
      const { bucket, key } = parseS3Uri(uri);
      const page = await testClient().send(
        new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: `${key}/` }),
      );
      return (page.Uploads ?? []).map((u) => u.Key!.split("/").at(-1)).sort();
    };
    // Two saves writing a data file bigger than a part (a multipart upload in progress): one leased.
    await writeWholeFile(fs, fs.concatPath(uri, saveLeaseFile("00000000000a")), [new Uint8Array(1)]);
    const leased = await fs.createStream(fs.concatPath(uri, "__0_0.00000000000a.distcp"), "wb");
    const dead = await fs.createStream(fs.concatPath(uri, "__0_0.00000000000b.distcp"), "wb");
    for (const s of [leased, dead]) await s.write(new Uint8Array(11 * 1024 * 1024));
    await expect
      .poll(uploads, { timeout: 20_000 })
      .toEqual(["__0_0.00000000000a.distcp", "__0_0.00000000000b.distcp"]);
    const r = await collectGarbage(uri, { graceMs: 0 });
    expect(r.uploads).toBe(1);
    expect(await uploads()).toEqual(["__0_0.00000000000a.distcp"]);
    await leased.close(); // the leased save's file completes
    await dead.abort();
    expect((await fs.list(uri)).map((e) => e.name)).toContain("__0_0.00000000000a.distcp");
  });
});
