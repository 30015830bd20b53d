import { randomUUID } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";
import { createS3Client, type S3ClientConfig, S3FileSystem } from "@dcpjs/s3";
import { inject } from "vitest";

/** The suite's S3 server (from the global setup). */
export function s3Server() {
  return inject("s3");
}

/** The standard AWS variables (and `S3_ENDPOINT`) that point a child process at the suite's server. */
export function s3Env(): Record<string, string> {
  const s = s3Server();
  return {
    S3_ENDPOINT: s.endpoint,
    AWS_ACCESS_KEY_ID: s.accessKeyId,
    AWS_SECRET_ACCESS_KEY: s.secretAccessKey,
    AWS_REGION: s.region,
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
  };
}

/** A client for the suite's server, with dcpjs's own config and any overrides. */
export function testClient(overrides: S3ClientConfig = {}): S3Client {
  const s = s3Server();
  return createS3Client({
    endpoint: s.endpoint,
    region: s.region,
    credentials: { accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey },
    ...overrides,
  });
}

/** A fresh `s3://bucket/tests/<uuid>` prefix for one test. */
export function freshUri(name = "ckpt"): string {
  return `s3://${s3Server().bucket}/tests/${randomUUID()}/${name}`;
}

/** Every key under an `s3://` URI prefix, relative to it, sorted. */
export async function listKeys(client: S3Client, uri: string): Promise<string[]> {
  const [bucket, ...rest] = uri.slice(5).split("/");
  const prefix = `${rest.join("/")}/`;
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await client.send(
      new ListObjectsV2Command({
        Bucket: bucket,
        Prefix: prefix,
        ...(token ? { ContinuationToken: token } : {}),
      }),
    );
    for (const o of page.Contents ?? []) keys.push(o.Key!.slice(prefix.length));
    token = page.NextContinuationToken;
  } while (token);
  return keys.sort();
}

/** One request the client sent. */
export interface RecordedRequest {
  readonly command: string;
  readonly key: string | undefined;
  readonly range: string | undefined;
  readonly partNumber: number | undefined;
}

/** Records every request a client sends (command, key, Range, part number), in order. */
export function recordRequests(
  client: S3Client,
  onRequest?: (r: RecordedRequest) => void,
): RecordedRequest[] {
  const log: RecordedRequest[] = [];
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const input = args.input as { Key?: string; Range?: string; PartNumber?: number };
      const r = {
        command: context.commandName ?? "?",
        key: input.Key,
        range: input.Range,
        partNumber: input.PartNumber,
      };
      log.push(r);
      onRequest?.(r);
      return next(args);
    },
    { step: "initialize", name: `dcpjsTestRecorder${Math.random()}` },
  );
  return log;
}

/** Uploads every file of a local folder (not its subfolders) under an s3:// prefix. */
export async function uploadFolder(dir: string, uri: string): Promise<void> {
  const fs = new S3FileSystem({ client: testClient() });
  for (const f of await readdir(dir, { withFileTypes: true })) {
    if (!f.isFile()) continue;
    const w = await fs.createStream(fs.concatPath(uri, f.name), "wb");
    await w.write(await readFile(join(dir, f.name)));
    await w.close();
  }
}
