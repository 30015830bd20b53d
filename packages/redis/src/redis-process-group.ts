import { randomUUID } from "node:crypto";
import { CheckpointError, type ProcessGroup } from "@dcpjs/core";
import {
  assertIntegerInRange,
  assertRoot,
  assertScatterValues,
  type WorkerGroupDescription,
} from "@dcpjs/core/extend";
import { Redis } from "ioredis";
import {
  CLEANUP_SCRIPT,
  collectiveKeys,
  DEFAULT_PIECE_BYTES,
  MAX_PIECE_BYTES,
  MIN_PIECE_BYTES,
  type PieceLayout,
  readValues,
  writeValues,
} from "./pieces.js";

/** How long a rank waits for the others at a collective when no timeout is given: 5 minutes. */
export const DEFAULT_COLLECTIVE_TIMEOUT_MS = 300_000;
/**
 * How much longer than `timeoutMs` a collective may take in all before the rank gives up on
 * Redis itself (a stalled or unreachable server), in ms.
 */
export const REDIS_DEADLINE_GRACE_MS = 2_000;

/** Options of {@link createRedisProcessGroup}. */
export interface RedisProcessGroupOptions {
  /** The Redis URL every rank reaches, e.g. `redis://10.0.0.5:6379/0`. Ignored with `redis`. */
  readonly url?: string;
  /** A connected client to use instead of `url` (a second, blocking connection is duplicated from it). */
  readonly redis?: Redis;
  /**
   * Names this job's group; every key is under `dcpjs:{groupId}:`. Successive checkpoints of one
   * job may reuse one.
   */
  readonly groupId: string;
  /**
   * Identifies this run of the job, the same on all its ranks (as torchrun's `--rdzv-id`): keys
   * are under `dcpjs:{groupId}:{jobId}:`, so two jobs with different job ids never meet, whatever
   * their group ids. Without it, ranks meet in an incarnation of the group opened by the first
   * to join; a second process claiming a rank there fails with `GROUP_CONFLICT` and makes every
   * rank of that incarnation fail the same way, so two jobs started at once on one group id fail
   * instead of mixing. @default none
   */
  readonly jobId?: string;
  /** This rank, 0 ≤ rank < size. */
  readonly rank: number;
  /** The number of ranks. */
  readonly size: number;
  /**
   * How long a rank waits at a collective for the others, in ms; then every waiting rank throws
   * a `TIMEOUT` error naming the ranks that did not arrive. A Redis that does not answer at all
   * ends the collective after `timeoutMs` + {@link REDIS_DEADLINE_GRACE_MS}, also with `TIMEOUT`.
   * @default 300000 (5 minutes)
   */
  readonly timeoutMs?: number;
  /**
   * The largest Redis value, command or reply a collective uses, in bytes (1 KiB … 512 MiB,
   * Redis' own `proto-max-bulk-len`): an encoded value larger than 64 KiB (or than this, if
   * smaller) is written to keys of its own in pieces of at most this size and read back piece by
   * piece, so gathers, scatters and broadcasts of hundreds of MB stay within Redis' limits, and a
   * receiver holds the decoded values plus one encoded value and four pieces (a
   * sender: its encoded value). Every rank of a group must use the same size.
   * @default 8388608 (8 MiB, {@link DEFAULT_PIECE_BYTES})
   */
  readonly pieceBytes?: number;
}

/**
 * Joins rank ARGV[1] of ARGV[2] to the open incarnation at KEYS[1] (a hash), opening one with
 * token ARGV[4] when none is open. Returns {1, token}; {0, size} when the open incarnation has
 * another size; {-1, token} when another process already claimed the rank there (the incarnation
 * is then closed, so no later rank joins it). A full incarnation is closed (the hash deleted).
 */
const JOIN_SCRIPT = `
local h = KEYS[1]
if redis.call('EXISTS', h) == 0 then
  redis.call('HSET', h, 'token', ARGV[4], 'size', ARGV[2], 'joined', 0)
end
local size = redis.call('HGET', h, 'size')
if size ~= ARGV[2] then return {0, size} end
local token = redis.call('HGET', h, 'token')
if redis.call('HSETNX', h, 'r' .. ARGV[1], ARGV[3]) == 0 then
  redis.call('DEL', h)
  return {-1, token}
end
if redis.call('HINCRBY', h, 'joined', 1) == tonumber(ARGV[2]) then
  redis.call('DEL', h)
else
  redis.call('PEXPIRE', h, ARGV[5])
end
return {1, token}
`;

/** Deletes the incarnation hash KEYS[1] if it is still the one with token ARGV[1]. */
const ABANDON_SCRIPT = `
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

/**
 * Records, once, which ranks had arrived at a collective that timed out (KEYS[1], the arrivals
 * set) in KEYS[2] (kept for ARGV[1] ms, so every rank that times out names the same ranks), and
 * deletes the collective's other keys (KEYS[3], KEYS[4]) and its pieces (named in the set
 * KEYS[5]). Returns the arrivals as JSON.
 */
const TIMEOUT_SCRIPT = `
local failed = redis.call('GET', KEYS[2])
if failed then return failed end
local present = cjson.encode(redis.call('SMEMBERS', KEYS[1]))
redis.call('SET', KEYS[2], present, 'PX', ARGV[1])
local pieces = redis.call('SMEMBERS', KEYS[5])
for i = 1, #pieces do redis.call('DEL', pieces[i]) end
redis.call('DEL', KEYS[1], KEYS[3], KEYS[4], KEYS[5])
return present
`;

/**
 * Who takes part in one collective: `senders` contribute and are awaited; `receivers` wait for
 * all senders and read.
 */
interface Roles {
  readonly senders: readonly number[];
  readonly receivers: readonly number[];
}

/**
 * A {@link ProcessGroup} whose ranks meet in Redis, the way torch's Store-based rendezvous works.
 *
 * Joining: the ranks meet in one incarnation of the group (a token agreed through an atomic
 * script; see {@link RedisProcessGroupOptions.jobId}). Collective `n` of an incarnation writes
 * under `dcpjs:{groupId}[:{jobId}]:{token}:{n}:…` (values in a hash, arrivals in a set); the last
 * sender to arrive wakes the receivers through a list they block on (BLPOP), and the last
 * receiver to read deletes the collective's keys. A scatter or broadcast waits only for its
 * root, so a rank that dies after its last contribution (e.g. once the coordinator has committed
 * a checkpoint) does not fail the others; gathers wait for every rank, so each names the missing. Keys expire after twice the timeout, and a collective that times out deletes its own.
 *
 * Every wait has a client-side deadline, so a stalled Redis cannot hang a rank; Redis failures
 * become `IO_ERROR`s naming the server, the collective and the rank, and the connections' error
 * events are handled (no "Unhandled error event" output).
 *
 * Values are encoded with msgpack (`Map`, `Set`, `bigint` and `Error` kept); one larger than
 * 64 KiB goes in pieces of at most {@link RedisProcessGroupOptions.pieceBytes} (see there).
 */
export class RedisProcessGroup implements ProcessGroup {
  readonly rank: number;
  readonly size: number;
  readonly #groupId: string;
  readonly #jobId: string | undefined;
  readonly #url: string | undefined;
  readonly #prefix: string;
  readonly #timeoutMs: number;
  readonly #pieceBytes: number;
  readonly #client: Redis;
  readonly #blocking: Redis;
  readonly #ownsClient: boolean;
  readonly #where: string;
  #token = "";
  #seq = 0;
  #broken: CheckpointError | undefined;
  #lastRedisError: Error | undefined;

  /** Use {@link createRedisProcessGroup}. */
  constructor(options: RedisProcessGroupOptions & { readonly client: Redis; readonly ownsClient: boolean }) {
    this.rank = options.rank;
    this.size = options.size;
    this.#groupId = options.groupId;
    this.#jobId = options.jobId;
    this.#url = options.ownsClient ? options.url : undefined;
    this.#prefix = `dcpjs:${options.groupId}${options.jobId ? `:${options.jobId}` : ""}`;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_COLLECTIVE_TIMEOUT_MS;
    this.#pieceBytes = options.pieceBytes ?? DEFAULT_PIECE_BYTES;
    this.#client = options.client;
    this.#blocking = options.client.duplicate();
    this.#ownsClient = options.ownsClient;
    const { host, port } = options.client.options;
    this.#where = `Redis at ${host ?? "?"}:${port ?? "?"}`;
    const remember = (error: Error) => {
      this.#lastRedisError = error;
    };
    this.#blocking.on("error", remember);
    if (this.#ownsClient) this.#client.on("error", remember);
  }

  /**
   * How `asyncSave`'s save thread rebuilds this rank: a group of its own on the same Redis and
   * group id, under the job id `{jobId-}background-{token}` of this incarnation, so every rank's
   * save thread meets the others' there and never the collectives of this group. Absent for a
   * group made from a client of the caller's (`redis`): its connection cannot be described.
   */
  describeForWorker(): WorkerGroupDescription | undefined {
    if (this.#url === undefined || this.#token === "") return undefined;
    const options: RedisProcessGroupOptions = {
      url: this.#url,
      groupId: this.#groupId,
      jobId: `${this.#jobId ? `${this.#jobId}-` : ""}background-${this.#token}`,
      rank: this.rank,
      size: this.size,
      timeoutMs: this.#timeoutMs,
      pieceBytes: this.#pieceBytes,
    };
    return {
      kind: "module",
      module: import.meta.url,
      factory: "createRedisProcessGroup",
      options,
      key: `redis:${this.#url}:${options.groupId}:${options.jobId}:${this.rank}`,
    };
  }

  /**
   * Meets the other ranks in one incarnation of the group, and waits until all have joined.
   * @throws {@link CheckpointError} `GROUP_CONFLICT` when another process holds this rank in the
   * incarnation, or it was opened with another size; `TIMEOUT` naming the ranks that never join.
   */
  async join(): Promise<void> {
    const rdzv = `${this.#prefix}:rdzv`;
    const reply = (await this.#withDeadline("join", () =>
      this.#client.eval(
        JOIN_SCRIPT,
        1,
        rdzv,
        String(this.rank),
        String(this.size),
        randomUUID(),
        randomUUID().replaceAll("-", "").slice(0, 16),
        String(2 * this.#timeoutMs),
      ),
    )) as [number, string];
    const [status, value] = reply;
    if (status === 0) {
      throw new CheckpointError(
        "GROUP_CONFLICT",
        `Expected group "${this.#groupId}" to have ${this.size} ranks, but ranks are joining it with size ${value}: another job with the same group id? (set DCPJS_JOB_ID or another DCPJS_GROUP_ID)`,
      );
    }
    if (status === -1) {
      const message = `Rank ${this.rank} of group "${this.#groupId}" was claimed by two processes: two jobs with one group id started at once? (set DCPJS_JOB_ID or another DCPJS_GROUP_ID)`;
      // Fail everyone in that incarnation, now or at their next collective.
      const conflict = `${this.#prefix}:${value}:conflict`;
      await this.#client
        .multi()
        .set(conflict, message, "PX", 2 * this.#timeoutMs)
        .rpush(`${conflict}:wake`, ...Array(this.size).fill(message))
        .pexpire(`${conflict}:wake`, 2 * this.#timeoutMs)
        .exec()
        .catch(() => {});
      throw new CheckpointError("GROUP_CONFLICT", message);
    }
    this.#token = value;
    this.#seq = 0;
    try {
      await this.barrier();
    } catch (error) {
      await this.#client.eval(ABANDON_SCRIPT, 1, rdzv, value).catch(() => {});
      throw error;
    }
  }

  /** Runs one collective against a client-side deadline, mapping Redis failures to typed errors. */
  async #withDeadline<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.#broken) throw this.#broken;
    const deadline = this.#timeoutMs + REDIS_DEADLINE_GRACE_MS;
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const cause = this.#lastRedisError ? `; last connection error: ${this.#lastRedisError.message}` : "";
        reject(
          new CheckpointError(
            "TIMEOUT",
            `${this.#where} did not answer within ${deadline} ms at ${what} of group "${this.#groupId}" (rank ${this.rank})${cause}`,
          ),
        );
      }, deadline);
    });
    try {
      return await Promise.race([fn(), expired]);
    } catch (error) {
      if (error instanceof CheckpointError) {
        // A wait cut short leaves the blocking connection mid-command: this group is done.
        if (error.code === "TIMEOUT" || error.code === "GROUP_CONFLICT") this.#broken = error;
        throw error;
      }
      const message = error instanceof Error ? error.message : String(error);
      this.#broken = new CheckpointError(
        "IO_ERROR",
        `${this.#where} failed at ${what} of group "${this.#groupId}" (rank ${this.rank}): ${message}`,
        { cause: error },
      );
      throw this.#broken;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Runs this rank's part of the next collective: a sender contributes `values` (encoded one at
   * a time as they are written); a receiver waits for every sender and returns the requested
   * fields' values, decoded.
   */
  async #exchange(
    values: Iterable<readonly [string, unknown]>,
    read: readonly string[],
    roles: Roles,
  ): Promise<unknown[]> {
    const seq = this.#seq++;
    return this.#withDeadline(`collective #${seq}`, () => this.#run(seq, values, read, roles));
  }

  async #run(
    seq: number,
    values: Iterable<readonly [string, unknown]>,
    read: readonly string[],
    { senders, receivers }: Roles,
  ): Promise<unknown[]> {
    const key = `${this.#prefix}:${this.#token}:${seq}`;
    const conflict = `${this.#prefix}:${this.#token}:conflict`;
    const ttl = 2 * this.#timeoutMs;
    const layout: PieceLayout = {
      key,
      ttlMs: ttl,
      pieceBytes: this.#pieceBytes,
      what: `collective #${seq} of group "${this.#groupId}" (rank ${this.rank})`,
      where: this.#where,
    };
    const sending = senders.includes(this.rank);
    const receiving = receivers.includes(this.rank);
    const tx = this.#client.multi().get(conflict);
    let arrived = 0;
    if (sending) {
      await writeValues(this.#client, layout, values, tx);
      tx.sadd(`${key}:arrived`, String(this.rank)).pexpire(`${key}:arrived`, ttl).scard(`${key}:arrived`);
    }
    const results = (await tx.exec()) ?? [];
    const conflicted = results[0]?.[1];
    if (typeof conflicted === "string") throw new CheckpointError("GROUP_CONFLICT", conflicted);
    if (sending) arrived = Number(results.at(-1)?.[1] ?? 0);
    const lastSender = sending && arrived === senders.length;
    const waiting = receivers.filter((r) => !(lastSender && r === this.rank));
    if (lastSender && waiting.length > 0) {
      await this.#client
        .multi()
        .rpush(`${key}:go`, ...Array(waiting.length).fill("1"))
        .pexpire(`${key}:go`, ttl)
        .exec();
    }
    if (!receiving) return [];
    if (!lastSender) {
      const woke = await this.#blocking.blpop(`${key}:go`, `${conflict}:wake`, this.#timeoutMs / 1000);
      if (woke?.[0] === `${conflict}:wake`) throw new CheckpointError("GROUP_CONFLICT", woke[1]);
      if (woke === null) {
        const arrivedJson = (await this.#client.eval(
          TIMEOUT_SCRIPT,
          5,
          `${key}:arrived`,
          `${key}:failed`,
          `${key}:v`,
          `${key}:read`,
          `${key}:pieces`,
          String(ttl),
        )) as string;
        const arrivals: unknown = JSON.parse(arrivedJson); // cjson encodes an empty set as {}
        const present = new Set(Array.isArray(arrivals) ? arrivals.map(Number) : []);
        const missing = senders.filter((r) => !present.has(r));
        throw new CheckpointError(
          "TIMEOUT",
          `Rank(s) [${missing.join(", ")}] did not arrive within ${this.#timeoutMs} ms at collective #${seq} of group "${this.#groupId}" (rank ${this.rank} waited; ${senders.length - missing.length} of ${senders.length} arrived)`,
        );
      }
    }
    const got = read.length > 0 ? await readValues(this.#client, layout, read) : [];
    const done = await this.#client.incr(`${key}:read`);
    if (done === 1) await this.#client.pexpire(`${key}:read`, ttl);
    if (done === receivers.length) {
      const keys = collectiveKeys(key);
      await this.#client.eval(CLEANUP_SCRIPT, keys.length, ...keys);
    }
    return got;
  }

  #all(): number[] {
    return Array.from({ length: this.size }, (_, r) => r);
  }

  async gather<T>(value: T, root = 0): Promise<T[] | undefined> {
    assertRoot(root, this.size);
    const ranks = this.#all().map((r) => `r${r}`);
    const got = await this.#exchange(
      [[`r${this.rank}`, value]],
      this.rank === root ? ranks : [],
      // Every rank waits for all, so that each learns which rank is missing.
      { senders: this.#all(), receivers: this.#all() },
    );
    return this.rank === root ? (got as T[]) : undefined;
  }

  async scatter<T>(values: T[] | undefined, root = 0): Promise<T> {
    assertRoot(root, this.size);
    if (this.rank === root) assertScatterValues(values, this.size);
    if (this.rank === root) {
      const all = values!;
      // Encoded one by one as they are written.
      const fields = (function* () {
        for (const [r, v] of all.entries()) if (r !== root) yield [`s${r}`, v] as const;
      })();
      await this.#exchange(fields, [], { senders: [root], receivers: this.#others(root) });
      return all[root]!;
    }
    const [mine] = await this.#exchange([], [`s${this.rank}`], {
      senders: [root],
      receivers: this.#others(root),
    });
    return mine as T;
  }

  async broadcast<T>(value: T | undefined, root = 0): Promise<T> {
    assertRoot(root, this.size);
    const roles = { senders: [root], receivers: this.#others(root) };
    if (this.rank === root) {
      await this.#exchange([["b", value]], [], roles);
      return value as T;
    }
    const [got] = await this.#exchange([], ["b"], roles);
    return got as T;
  }

  #others(root: number): number[] {
    return this.#all().filter((r) => r !== root);
  }

  async allGather<T>(value: T): Promise<T[]> {
    const ranks = this.#all().map((r) => `r${r}`);
    const got = await this.#exchange([[`r${this.rank}`, value]], ranks, {
      senders: this.#all(),
      receivers: this.#all(),
    });
    return got as T[];
  }

  async barrier(): Promise<void> {
    await this.#exchange([], [], { senders: this.#all(), receivers: this.#all() });
  }

  /**
   * Closes the group's connections (the given client too only if the group created it): a
   * polite QUIT, or at once when the group has failed or Redis does not answer within 1 s.
   */
  async close(): Promise<void> {
    // A stalled server never answers our FIN: drop the sockets, or they keep the process alive.
    this.#blocking.disconnect();
    this.#blocking.stream?.destroy();
    if (!this.#ownsClient) return;
    if (this.#broken) {
      this.#client.disconnect();
      this.#client.stream?.destroy();
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, 1000);
    });
    await Promise.race([this.#client.quit().catch(() => {}), late]);
    clearTimeout(timer);
    this.#client.disconnect();
    this.#client.stream?.destroy();
  }
}

/**
 * Connects rank `rank` of `size` to a group that meets in Redis, and waits until every rank has
 * joined (so it also fails with `TIMEOUT`, naming the missing ranks, when one never starts).
 *
 * @param options - see {@link RedisProcessGroupOptions}.
 * @returns the group; `close()` it when done.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` for a rank outside `[0, size)`, a size below
 * 1, an empty group or job id (or one with ":"), or neither `url` nor `redis`; `TIMEOUT` when
 * ranks do not join in time; `GROUP_CONFLICT` when two processes claim one rank; `IO_ERROR` when
 * Redis fails.
 * @example
 * ```ts
 * const pg = await createRedisProcessGroup({ url: "redis://10.0.0.5:6379", groupId: "run-7", rank, size: 8 });
 * await save(stateDict, { checkpointId: "s3://bucket/run-7/step-100", processGroup: pg });
 * await pg.close();
 * ```
 */
export async function createRedisProcessGroup(options: RedisProcessGroupOptions): Promise<RedisProcessGroup> {
  const { rank, size, groupId, jobId } = options;
  assertIntegerInRange("size (WORLD_SIZE)", size, 1);
  assertIntegerInRange("rank (RANK)", rank, 0, size - 1);
  for (const [name, id] of [
    ["groupId", groupId],
    ["jobId", jobId],
  ] as const) {
    if (name === "jobId" && id === undefined) continue;
    if (typeof id !== "string" || id.length === 0 || id.includes(":")) {
      throw new CheckpointError(
        "INVALID_ARGUMENT",
        `Expected ${name} to be a non-empty string without ":", got ${JSON.stringify(id)}`,
      );
    }
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_COLLECTIVE_TIMEOUT_MS;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected timeoutMs to be a positive number of ms, got ${String(timeoutMs)}`,
    );
  }
  const pieceBytes = options.pieceBytes ?? DEFAULT_PIECE_BYTES;
  if (!Number.isSafeInteger(pieceBytes) || pieceBytes < MIN_PIECE_BYTES || pieceBytes > MAX_PIECE_BYTES) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected pieceBytes to be an integer from ${MIN_PIECE_BYTES} to ${MAX_PIECE_BYTES}, got ${String(pieceBytes)}`,
    );
  }
  if (!options.redis && !options.url) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      "Expected a Redis url (or a redis client) for the process group, got neither",
    );
  }
  const client = options.redis ?? new Redis(options.url!, { lazyConnect: false, maxRetriesPerRequest: 3 });
  const group = new RedisProcessGroup({
    ...options,
    timeoutMs,
    pieceBytes,
    client,
    ownsClient: !options.redis,
  });
  try {
    await group.join();
  } catch (error) {
    await group.close();
    throw error;
  }
  return group;
}
