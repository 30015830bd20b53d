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
  const [stopS3, redis] = await Promise.all([
    s3Setup(project),
    startRedisServer((line) => console.log(line)),
  ]);
  project.provide("redisUrl", redis.url);
  return async () => {
    await Promise.all([stopS3(), redis.stop()]);
  };
}
