import { execFile } from "node:child_process";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

/** The S3 server the suite runs against, as handed to tests by the global setup. */
export interface S3TestServer {
  /** `http://127.0.0.1:PORT` or the external endpoint. */
  readonly endpoint: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly region: string;
  /** Which server: `external` (S3_ENDPOINT), `minio` (testcontainers) or `ceph-rgw` (loopback). */
  readonly backend: "external" | "minio" | "ceph-rgw";
  /** A bucket created for the suite. */
  readonly bucket: string;
}

/** A started server and how to stop it. */
export interface StartedS3Server {
  readonly server: Omit<S3TestServer, "bucket">;
  stop(): Promise<void>;
}

/** MinIO image used when a container runtime exists (pinned). */
export const MINIO_IMAGE = "minio/minio:RELEASE.2025-02-28T09-55-16Z";

const RGW_DIR = fileURLToPath(new URL("./rgw/", import.meta.url));
const run = promisify(execFile);

async function containerRuntimeAvailable(): Promise<boolean> {
  try {
    const { getContainerRuntimeClient } = await import("testcontainers");
    await getContainerRuntimeClient();
    return true;
  } catch {
    return false;
  }
}

async function startMinio(): Promise<StartedS3Server> {
  const { MinioContainer } = await import("@testcontainers/minio");
  const minio = await new MinioContainer(MINIO_IMAGE).start();
  return {
    server: {
      endpoint: minio.getConnectionUrl(),
      accessKeyId: minio.getUsername(),
      secretAccessKey: minio.getPassword(),
      region: "us-east-1",
      backend: "minio",
    },
    stop: async () => {
      await minio.stop();
    },
  };
}

async function startCephRgw(): Promise<StartedS3Server> {
  const state = await mkdtemp(join(tmpdir(), "dcpjs-rgw-"));
  let stdout: string;
  try {
    ({ stdout } = await run("bash", [join(RGW_DIR, "start-rgw.sh"), state], {
      maxBuffer: 16 << 20,
      timeout: 900_000,
    }));
  } catch (error) {
    await run("bash", [join(RGW_DIR, "stop-rgw.sh"), state]).catch(() => {});
    throw error;
  }
  const env = Object.fromEntries(
    stdout
      .trim()
      .split("\n")
      .map((l) => l.split(/=(.*)/s).slice(0, 2) as [string, string]),
  );
  return {
    server: {
      endpoint: env.S3_ENDPOINT!,
      accessKeyId: env.AWS_ACCESS_KEY_ID!,
      secretAccessKey: env.AWS_SECRET_ACCESS_KEY!,
      region: env.AWS_REGION!,
      backend: "ceph-rgw",
    },
    stop: async () => {
      await run("bash", [join(RGW_DIR, "stop-rgw.sh"), state]);
    },
  };
}

/**
 * Starts (or finds) a real S3 server: `S3_ENDPOINT` with the AWS credential variables when set;
 * otherwise MinIO through testcontainers when a container runtime answers; otherwise a
 * single-node Ceph RGW on loopback, started by test/support/rgw/start-rgw.sh.
 *
 * @param log - where to say which one.
 */
export async function startS3Server(log: (line: string) => void): Promise<StartedS3Server> {
  const env = process.env;
  if (env.S3_ENDPOINT) {
    log(`[s3] using S3_ENDPOINT=${env.S3_ENDPOINT}`);
    return {
      server: {
        endpoint: env.S3_ENDPOINT,
        accessKeyId: env.AWS_ACCESS_KEY_ID ?? "",
        secretAccessKey: env.AWS_SECRET_ACCESS_KEY ?? "",
        region: env.AWS_REGION ?? "us-east-1",
        backend: "external",
      },
      stop: async () => {},
    };
  }
  const t0 = performance.now();
  if (await containerRuntimeAvailable()) {
    log(`[s3] container runtime found; starting ${MINIO_IMAGE}`);
    return startMinio();
  }
  log(
    `[s3] no container runtime (checked in ${(performance.now() - t0).toFixed(0)} ms); starting Ceph RGW on loopback`,
  );
  const started = await startCephRgw();
  log(
    `[s3] Ceph RGW ready at ${started.server.endpoint} after ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  return started;
}
