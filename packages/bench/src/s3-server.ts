import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import type { S3ClientConfig } from "@dcpjs/s3";
import { startS3Server } from "../../../test/support/s3-server.js";

/** The bucket the S3 benchmarks use. */
export const BENCH_BUCKET = "dcpjs-bench";

/** An S3 server for a benchmark run (the test suite's: S3_ENDPOINT, MinIO, or a loopback Ceph RGW) and its settings. */
export async function benchServer(): Promise<{
  config: S3ClientConfig;
  env: Record<string, string>;
  backend: string;
  stop(): Promise<void>;
}> {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = "true";
  const started = await startS3Server((line) => console.error(line));
  const s = started.server;
  const client = new S3Client({
    endpoint: s.endpoint,
    region: s.region,
    forcePathStyle: true,
    credentials: { accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey },
  });
  await client.send(new CreateBucketCommand({ Bucket: BENCH_BUCKET })).catch((e: { name?: string }) => {
    if (e.name !== "BucketAlreadyOwnedByYou" && e.name !== "BucketAlreadyExists") throw e;
  });
  client.destroy();
  return {
    config: {
      endpoint: s.endpoint,
      region: s.region,
      credentials: { accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey },
    },
    env: {
      S3_ENDPOINT: s.endpoint,
      AWS_ACCESS_KEY_ID: s.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s.secretAccessKey,
      AWS_REGION: s.region,
    },
    backend: s.backend,
    stop: () => started.stop(),
  };
}
