import { CheckpointError } from "@dcpjs/core";
import {
  createRedisProcessGroup,
  type RedisProcessGroup,
  type RedisProcessGroupOptions,
} from "./redis-process-group.js";

/** The environment variables {@link fromEnv} reads. */
export const ENV = {
  /** This rank (as torchrun's `RANK`). */
  rank: "RANK",
  /** The number of ranks (as torchrun's `WORLD_SIZE`). */
  worldSize: "WORLD_SIZE",
  /** The Redis URL; `REDIS_URL` is used when it is unset. */
  redisUrl: "DCPJS_REDIS_URL",
  /** The group id; defaults to `dcpjs`. */
  groupId: "DCPJS_GROUP_ID",
  /** This run's id, the same on all its ranks (optional; see `RedisProcessGroupOptions.jobId`). */
  jobId: "DCPJS_JOB_ID",
  /** The collective timeout in ms; defaults to 300000. */
  timeoutMs: "DCPJS_TIMEOUT_MS",
  /** The largest Redis value a collective writes, in bytes; defaults to 8388608 (8 MiB). */
  pieceBytes: "DCPJS_PIECE_BYTES",
} as const;

function intFrom(env: NodeJS.ProcessEnv, name: string): number {
  const raw = env[name];
  const n = Number(raw);
  if (raw === undefined || raw.trim() === "" || !Number.isSafeInteger(n)) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected the environment variable ${name} to be an integer, got ${JSON.stringify(raw)}`,
    );
  }
  return n;
}

/**
 * Joins the Redis process group described by the environment, as torchrun's `env://`
 * rendezvous: `RANK`, `WORLD_SIZE`, `DCPJS_REDIS_URL` (or `REDIS_URL`), `DCPJS_GROUP_ID` (default
 * `dcpjs`), `DCPJS_JOB_ID` (optional), `DCPJS_TIMEOUT_MS` (default 300000) and `DCPJS_PIECE_BYTES`
 * (default 8388608).
 *
 * @param overrides - options that take precedence over the environment.
 * @param env - the environment to read. @default process.env
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` naming a missing or malformed variable, and
 * the errors of {@link createRedisProcessGroup}.
 */
export async function fromEnv(
  overrides: Partial<RedisProcessGroupOptions> = {},
  env: NodeJS.ProcessEnv = process.env,
): Promise<RedisProcessGroup> {
  const url = overrides.url ?? env[ENV.redisUrl] ?? env.REDIS_URL;
  if (!overrides.redis && !url) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected ${ENV.redisUrl} or REDIS_URL to name the Redis server, got neither`,
    );
  }
  return createRedisProcessGroup({
    ...overrides,
    ...(url ? { url } : {}),
    rank: overrides.rank ?? intFrom(env, ENV.rank),
    size: overrides.size ?? intFrom(env, ENV.worldSize),
    groupId: overrides.groupId ?? env[ENV.groupId] ?? "dcpjs",
    ...((overrides.jobId ?? env[ENV.jobId]) ? { jobId: overrides.jobId ?? env[ENV.jobId] } : {}),
    timeoutMs: overrides.timeoutMs ?? (env[ENV.timeoutMs] ? intFrom(env, ENV.timeoutMs) : undefined),
    pieceBytes: overrides.pieceBytes ?? (env[ENV.pieceBytes] ? intFrom(env, ENV.pieceBytes) : undefined),
  } as RedisProcessGroupOptions);
}
