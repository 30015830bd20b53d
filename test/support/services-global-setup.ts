import type { TestProject } from "vitest/node";
import { startRedisServer } from "./redis-server.js";
import s3Setup from "./s3-global-setup.js";

declare module "vitest" {
  export interface ProvidedContext {
    redisUrl: string;
  }
}

/** Vitest global setup of the services project: a real S3 server, a bucket, and a Redis server. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  // One after the other: on a fresh machine both may install Debian packages, and apt takes one
  // caller at a time.
  const redis = await startRedisServer((line) => console.log(line));
  let stopS3: () => Promise<void>;
  try {
    stopS3 = await s3Setup(project);
  } catch (error) {
    await redis.stop();
    throw error;
  }
  project.provide("redisUrl", redis.url);
  return async () => {
    await Promise.all([stopS3(), redis.stop()]);
  };
}
