import { assertRoot, assertScatterValues, CheckpointError, type ProcessGroup } from "@dcpjs/core";
import { Redis } from "ioredis";
import { decodeWire, encodeWire } from "./wire-codec.js";

/** How long a rank waits for the others at a collective when no timeout is given: 5 minutes. */
export const DEFAULT_COLLECTIVE_TIMEOUT_MS = 300_000;

/** Options of {@link createRedisProcessGroup}. */
export interface RedisProcessGroupOptions {
  /** The Redis URL every rank reaches, e.g. `redis://10.0.0.5:6379/0`. Ignored with `redis`. */
  readonly url?: string;
  /** A connected client to use instead of `url` (a second, blocking connection is duplicated from it). */
  readonly redis?: Redis;
  /**
   * Names this job's group; every key is under `dcpjs:{groupId}:`. Two jobs sharing a Redis must
   * use different ids; successive checkpoints of one job may reuse one.
   */
  readonly groupId: string;
  /** This rank, 0 ≤ rank < size. */
  readonly rank: number;
  /** The number of ranks. */
  readonly size: number;
  /**
   * How long a rank waits at a collective for the others, in ms; then every waiting rank throws
   * a `TIMEOUT` error naming the ranks that did not arrive. @default 300000 (5 minutes)
   */
  readonly timeoutMs?: number;
}

/** The key prefix of one collective. */
function roundKey(groupId: string, generation: string, seq: number): string {
  return `dcpjs:${groupId}:${generation}:${seq}`;
}

/**
 * A {@link ProcessGroup} whose ranks meet in Redis, the way torch's Store-based rendezvous works:
 * each collective `n` of the group writes under `dcpjs:{groupId}:{generation}:{n}:…` (values in a
 * hash, arrivals in a set), the last rank to arrive wakes the others through a list they block on
 * (BLPOP), and the last rank to read deletes the collective's keys. Keys also expire after
 * twice the timeout, so a crashed job leaves nothing behind for long.
 *
 * Values are encoded with msgpack (`Map`, `Set`, `bigint` and `Error` kept).
 */
export class RedisProcessGroup implements ProcessGroup {
  readonly rank: number;
  readonly size: number;
  readonly #groupId: string;
  readonly #timeoutMs: number;
  readonly #client: Redis;
  readonly #blocking: Redis;
  readonly #ownsClient: boolean;
  #generation = "";
  #seq = 0;

  /** Use {@link createRedisProcessGroup}. */
  constructor(options: RedisProcessGroupOptions & { readonly client: Redis; readonly ownsClient: boolean }) {
    this.rank = options.rank;
    this.size = options.size;
    this.#groupId = options.groupId;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_COLLECTIVE_TIMEOUT_MS;
    this.#client = options.client;
    this.#blocking = options.client.duplicate();
    this.#ownsClient = options.ownsClient;
  }

  /** Agrees on a generation id with the other ranks, so a restarted job never reads an old run's keys. */
  async join(): Promise<void> {
    const proposal = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
    const key = `dcpjs:${this.#groupId}:generation`;
    // Rank 0 proposes; the others wait for its proposal through a collective under a fixed name.
    this.#generation = "join";
    const all = await this.#exchange(this.rank === 0 ? { b: encodeWire(proposal) } : {}, ["b"]);
    this.#generation = decodeWire(all[0]!) as string;
    await this.#client.set(key, this.#generation, "PX", 2 * this.#timeoutMs);
    this.#seq = 0;
  }

  /**
   * Contributes `fields` to this rank's next collective, waits for every rank, and returns the
   * requested fields' values (`null` where absent).
   */
  async #exchange(
    fields: Record<string, Uint8Array>,
    read: readonly string[],
  ): Promise<(Uint8Array | null)[]> {
    const key = roundKey(this.#groupId, this.#generation, this.#seq++);
    const ttl = 2 * this.#timeoutMs;
    const tx = this.#client.multi();
    // ioredis sends Buffers as bytes but would stringify other Uint8Arrays.
    const buffers = Object.fromEntries(
      Object.entries(fields).map(([f, v]) => [f, Buffer.from(v.buffer, v.byteOffset, v.byteLength)]),
    );
    if (Object.keys(buffers).length > 0) tx.hset(`${key}:v`, buffers).pexpire(`${key}:v`, ttl);
    tx.sadd(`${key}:arrived`, String(this.rank)).pexpire(`${key}:arrived`, ttl).scard(`${key}:arrived`);
    const results = await tx.exec();
    const arrived = Number(results?.at(-1)?.[1] ?? 0);
    if (arrived === this.size) {
      if (this.size > 1)
        await this.#client
          .multi()
          .rpush(`${key}:go`, ...Array(this.size - 1).fill("1"))
          .pexpire(`${key}:go`, ttl)
          .exec();
    } else {
      const woke = await this.#blocking.blpop(`${key}:go`, this.#timeoutMs / 1000);
      if (woke === null) {
        const present = new Set((await this.#client.smembers(`${key}:arrived`)).map(Number));
        const missing = Array.from({ length: this.size }, (_, r) => r).filter((r) => !present.has(r));
        throw new CheckpointError(
          "TIMEOUT",
          `Rank(s) [${missing.join(", ")}] did not arrive within ${this.#timeoutMs} ms at collective #${this.#seq - 1} of group "${this.#groupId}" (rank ${this.rank} waited; ${present.size} of ${this.size} arrived)`,
        );
      }
    }
    const values = read.length > 0 ? await this.#client.hmgetBuffer(`${key}:v`, ...read) : [];
    const done = await this.#client.incr(`${key}:read`);
    if (done === 1) await this.#client.pexpire(`${key}:read`, ttl);
    if (done === this.size) await this.#client.del(`${key}:v`, `${key}:arrived`, `${key}:go`, `${key}:read`);
    return values;
  }

  async gather<T>(value: T, root = 0): Promise<T[] | undefined> {
    assertRoot(root, this.size);
    const ranks = Array.from({ length: this.size }, (_, r) => `r${r}`);
    const got = await this.#exchange(
      { [`r${this.rank}`]: encodeWire(value) },
      this.rank === root ? ranks : [],
    );
    return this.rank === root ? got.map((b) => decodeWire(b!) as T) : undefined;
  }

  async scatter<T>(values: T[] | undefined, root = 0): Promise<T> {
    assertRoot(root, this.size);
    if (this.rank === root) assertScatterValues(values, this.size);
    const fields =
      this.rank === root ? Object.fromEntries(values!.map((v, r) => [`s${r}`, encodeWire(v)])) : {};
    const [mine] = await this.#exchange(fields, [`s${this.rank}`]);
    return decodeWire(mine!) as T;
  }

  async broadcast<T>(value: T | undefined, root = 0): Promise<T> {
    assertRoot(root, this.size);
    const [got] = await this.#exchange(this.rank === root ? { b: encodeWire(value) } : {}, ["b"]);
    return decodeWire(got!) as T;
  }

  async allGather<T>(value: T): Promise<T[]> {
    const ranks = Array.from({ length: this.size }, (_, r) => `r${r}`);
    const got = await this.#exchange({ [`r${this.rank}`]: encodeWire(value) }, ranks);
    return got.map((b) => decodeWire(b!) as T);
  }

  async barrier(): Promise<void> {
    await this.#exchange({}, []);
  }

  /** Closes the group's connections (the given client too only if the group created it). */
  async close(): Promise<void> {
    this.#blocking.disconnect();
    if (this.#ownsClient) await this.#client.quit().catch(() => this.#client.disconnect());
  }
}

/**
 * Connects rank `rank` of `size` to a group that meets in Redis, and waits until every rank has
 * joined (so it also fails with `TIMEOUT`, naming the missing ranks, when one never starts).
 *
 * @param options - see {@link RedisProcessGroupOptions}.
 * @returns the group; `close()` it when done.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` for a rank outside `[0, size)`, a size below
 * 1, an empty group id, or neither `url` nor `redis`; `TIMEOUT` when ranks do not join in time.
 * @example
 * ```ts
 * const pg = await createRedisProcessGroup({ url: "redis://10.0.0.5:6379", groupId: "run-7", rank, size: 8 });
 * await save(stateDict, { checkpointId: "s3://bucket/run-7/step-100", processGroup: pg });
 * await pg.close();
 * ```
 */
export async function createRedisProcessGroup(options: RedisProcessGroupOptions): Promise<RedisProcessGroup> {
  const { rank, size, groupId } = options;
  if (!Number.isSafeInteger(size) || size < 1) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected size (WORLD_SIZE) to be an integer >= 1, got ${String(size)}`,
    );
  }
  if (!Number.isSafeInteger(rank) || rank < 0 || rank >= size) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected rank (RANK) to be an integer in [0, ${size}), got ${String(rank)}`,
    );
  }
  if (typeof groupId !== "string" || groupId.length === 0 || groupId.includes(":")) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected groupId to be a non-empty string without ":", got ${JSON.stringify(groupId)}`,
    );
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_COLLECTIVE_TIMEOUT_MS;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected timeoutMs to be a positive number of ms, got ${String(timeoutMs)}`,
    );
  }
  if (!options.redis && !options.url) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      "Expected a Redis url (or a redis client) for the process group, got neither",
    );
  }
  const client = options.redis ?? new Redis(options.url!, { lazyConnect: false, maxRetriesPerRequest: 3 });
  const group = new RedisProcessGroup({ ...options, timeoutMs, client, ownsClient: !options.redis });
  try {
    await group.join();
  } catch (error) {
    await group.close();
    throw error;
  }
  return group;
}
