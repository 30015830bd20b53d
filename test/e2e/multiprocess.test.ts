import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ListMultipartUploadsCommand } from "@aws-sdk/client-s3";
import { emptyTensor, load, save, type Tensor } from "@dcpjs/core";
import { parseS3Uri } from "@dcpjs/s3";
import { beforeAll, describe, expect, it } from "vitest";
import { type RankReport, reports, spawnRankWorkers, waitForText } from "../support/rank-jobs.js";
import { redisUrl } from "../support/redis.js";
import { freshUri, listKeys, s3Env, testClient } from "../support/s3.js";
import { randomTensor, sameTensor } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

const CLI = fileURLToPath(new URL("../../packages/cli/src/cli.ts", import.meta.url));

/** Starts `world` real rank processes of one job on the suite's Redis and S3 server. */
const spawnRanks = (world: number, env: Record<string, string>) =>
  spawnRankWorkers(world, { ...s3Env(), DCPJS_REDIS_URL: redisUrl(), ...env });

async function run(world: number, env: Record<string, string>): Promise<RankReport[]> {
  return (await reports(spawnRanks(world, env))).map((r) => r.report!) as RankReport[];
}

describe.each([
  ["a local folder", async () => join(await tempDir(), "ckpt")],
  ["the S3 server", async () => freshUri()],
])("ranks as separate processes, coordinated through Redis, on %s", (_name, targetOf) => {
  it("4 processes save; 3 processes load with another sharding; 1 process loads it whole — bit-exact", async () => {
    const target = await targetOf();
    const saved = await run(4, { MODE: "save", TARGET: target });
    expect(saved.map((r) => r.ok)).toEqual([true, true, true, true]);
    const loaded = await run(3, { MODE: "load", TARGET: target });
    for (const r of loaded) {
      expect(r.mismatches).toEqual([]);
      expect(r.ok).toBe(true);
      expect(r.tensors).toBe(4);
    }
    const [whole] = await run(1, { MODE: "load-whole", TARGET: target });
    expect(whole).toMatchObject({ ok: true, tensors: 4, mismatches: [] });
  });

  it("a rank that throws in writeData fails every rank with a CheckpointException naming it, and nothing is committed", async () => {
    const target = await targetOf();
    const out = await run(4, { MODE: "save", TARGET: target, FAIL_RANK: "2", FAIL_IN: "writeData" });
    for (const r of out)
      expect(r.error).toMatchObject({ code: "COLLECTIVE_FAILED", step: "write", failedRanks: [2] });
    const files = target.startsWith("s3://") ? await listKeys(testClient(), target) : await readdir(target);
    expect(files).not.toContain(".metadata");
  });
});

describe("a rank killed with SIGKILL in the middle of a save", () => {
  // The previous checkpoint is saved from this process through the s3:// router and the standard variables.
  beforeAll(() => {
    Object.assign(process.env, s3Env());
  });

  it.each([
    ["a local folder", async () => join(await tempDir(), "ckpt")],
    ["the S3 server", async () => freshUri()],
  ])(
    "on %s: the others fail within the timeout naming it; no .metadata; no upload left after dcp abort-uploads; the previous checkpoint loads",
    async (_name, targetOf) => {
      const previous = await targetOf();
      const w = randomTensor("float32", [256], 42);
      await save({ w, step: 1 }, { checkpointId: previous });

      const target = await targetOf();
      const children = spawnRanks(4, {
        MODE: "save",
        TARGET: target,
        HANG_RANK: "1",
        HANG_AFTER_BYTES: String(10 * 2 ** 20),
        DCPJS_TIMEOUT_MS: "6000",
      });
      const done = reports(children);
      await waitForText(children[1]!, "mid-write");
      children[1]!.kill("SIGKILL");
      const out = (await done).map((o) => o.report);
      expect(out[1]).toBeUndefined();
      for (const r of [out[0], out[2], out[3]]) {
        expect(r!.error!.code).toBe("TIMEOUT");
        expect(r!.error!.message).toMatch(/^Rank\(s\) \[1\] did not arrive within 6000 ms/);
      }
      if (target.startsWith("s3://")) {
        const client = testClient();
        expect(await listKeys(client, target)).not.toContain(".metadata");
        const { bucket, key } = parseS3Uri(target);
        const orphans = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: key }));
        expect(orphans.Uploads?.map((u) => u.Key?.replace(/\.[0-9a-f]{12}\.distcp$/, ".distcp"))).toEqual([
          `${key}/__1_0.distcp`,
        ]);
        const { execFile } = await import("node:child_process");
        const stdout = await new Promise<string>((resolve, reject) =>
          execFile(
            process.execPath,
            ["--import", "tsx", "--conditions=@dcpjs/source", CLI, "abort-uploads", target],
            { env: { ...process.env, ...s3Env() } },
            (e, so) => (e ? reject(e) : resolve(so)),
          ),
        );
        expect(stdout).toMatch(/^aborted 1 incomplete multipart upload\(s\)/);
        const left = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: key }));
        expect(left.Uploads ?? []).toEqual([]);
      } else {
        expect(await readdir(target)).not.toContain(".metadata");
      }
      const sd = { w: emptyTensor("float32", [256]) as Tensor, step: 0 };
      await load(sd, { checkpointId: previous });
      expect(sameTensor(sd.w, w)).toBe(true);
      expect(sd.step).toBe(1);
    },
  );
});
