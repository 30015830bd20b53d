import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import type { TestProject } from "vitest/node";
import { type S3TestServer, startS3Server } from "./s3-server.js";

declare module "vitest" {
  export interface ProvidedContext {
    s3: S3TestServer;
  }
}

/** The bucket the S3 suites use. */
const BUCKET = "dcpjs-test";

/** Vitest global setup of the S3 project: a real S3 server and a bucket, stopped at teardown. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = "true";
  const started = await startS3Server((line) => console.log(line));
  const { server } = started;
  const client = new S3Client({
    endpoint: server.endpoint,
    region: server.region,
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
  });
  try {
    await client.send(new CreateBucketCommand({ Bucket: BUCKET }));
  } catch (error) {
    const name = (error as { name?: string }).name;
    if (name !== "BucketAlreadyOwnedByYou" && name !== "BucketAlreadyExists") {
      await started.stop();
      throw error;
    }
  } finally {
    client.destroy();
  }
  project.provide("s3", { ...server, bucket: BUCKET });
  return () => started.stop();
}
