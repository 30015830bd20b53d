import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import "@dcpjs/s3";
import "@dcpjs/tfjs";
import { buildModel, float32Bits, makeOptimizer, trainingData } from "@dcpjs/demo-kit";
import * as tf from "@tensorflow/tfjs";
import { beforeAll, describe, expect, it } from "vitest";
import { exited, spawnTs } from "../support/child.js";
import { redisUrl } from "../support/redis.js";
import { freshUri, s3Env } from "../support/s3.js";
import { tempDir } from "../support/tmp.js";

const DEMO = fileURLToPath(new URL("../../packages/demo/src/cli.ts", import.meta.url));

beforeAll(async () => {
  Object.assign(process.env, s3Env());
  await tf.setBackend("cpu");
});

async function train(mode: "full" | "resume", ckpt: string, out: string) {
  const child = spawnTs("./tfjs-train.ts", [mode, "adam", ckpt, out]);
  expect(await exited(child)).toBe("0");
  return JSON.parse(await readFile(out, "utf8")) as { losses: string[]; weights: string[] };
}

describe("@dcpjs/tfjs on the S3 server", () => {
  it("adam: checkpoint to s3:// and resume in a new process, bit-identical", async () => {
    const dir = await tempDir();
    const ckpt = freshUri();
    const full = await train("full", ckpt, join(dir, "full.json"));
    const resumed = await train("resume", ckpt, join(dir, "resumed.json"));
    expect(resumed).toEqual(full);
  });

  it("model.save('s3://…') and tf.loadLayersModel('s3://…') round-trip the model", async () => {
    const model = buildModel();
    model.compile({ optimizer: makeOptimizer("adam"), loss: "meanSquaredError" });
    const { x, y } = trainingData();
    await model.trainOnBatch(x, y);
    const uri = freshUri("model");
    await model.save(uri);
    const loaded = await tf.loadLayersModel(uri);
    const predict = (m: tf.LayersModel) => float32Bits(Array.from((m.predict(x) as tf.Tensor).dataSync()));
    expect(predict(loaded)).toEqual(predict(model));
  });

  it("dcp-demo --train --procs 2 --to s3://… resumes bit-identically through Redis", async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [
        "--import",
        "tsx",
        "--conditions=@dcpjs/source",
        DEMO,
        "--train",
        "--procs",
        "2",
        "--redis",
        redisUrl(),
        "--to",
        freshUri("train"),
        "--no-progress",
      ],
      { maxBuffer: 16 << 20, env: { ...process.env, ...s3Env() } },
    );
    expect(stdout).toMatch(/2 processes meeting in Redis/);
    expect(stdout).toMatch(/OK: after the crash and resume, every loss and every weight matches/);
  }, 120_000);
});
