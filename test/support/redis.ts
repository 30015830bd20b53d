import { randomUUID } from "node:crypto";
import { createRedisProcessGroup, type RedisProcessGroup } from "@dcpjs/redis";
import { inject } from "vitest";

/** The suite's Redis URL (from the global setup). */
export function redisUrl(): string {
  return inject("redisUrl");
}

/** A group id no other test uses. */
export function freshGroupId(): string {
  return `test-${randomUUID()}`;
}

/** Joins `size` Redis ranks from this process (one connection pair each). */
export async function redisGroups(
  size: number,
  options: { groupId?: string; timeoutMs?: number } = {},
): Promise<RedisProcessGroup[]> {
  const groupId = options.groupId ?? freshGroupId();
  return Promise.all(
    Array.from({ length: size }, (_, rank) =>
      createRedisProcessGroup({
        url: redisUrl(),
        groupId,
        rank,
        size,
        ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}),
      }),
    ),
  );
}
