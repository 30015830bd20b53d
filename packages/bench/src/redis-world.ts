import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";

const RANK_SCRIPT = fileURLToPath(new URL("./redis-world-rank.ts", import.meta.url));

/** Columns of every tensor of a job of `world` ranks: at least one per rank, for the column-sharded load. */
export function worldColumns(world: number): number {
  return Math.max(64, world);
}

/** The collectives a rank times, in order. */
export const COLLECTIVES = ["barrier", "gather", "scatter", "broadcast", "allGather"] as const;
/** One of {@link COLLECTIVES}. */
export type Collective = (typeof COLLECTIVES)[number];

/** What one rank process of {@link runRedisWorld} prints. */
export interface RankWorldReport {
  readonly rank: number;
  /** Every loaded shard and value byte-exact. */
  readonly ok: boolean;
  /** Tensors that matched. */
  readonly tensors?: number;
  /** What differed, by fqn. */
  readonly mismatches?: readonly string[];
  /** From the process's first line to the group joined, ms. */
  readonly joinMs?: number;
  /** This rank's `save`, ms. */
  readonly saveMs?: number;
  /** This process's CPU time (user + system) during its `save`, ms. */
  readonly saveCpuMs?: number;
  /** This rank's `load` (another sharding), ms. */
  readonly loadMs?: number;
  /** This process's CPU time during its `load`, ms. */
  readonly loadCpuMs?: number;
  /** Each call's time on this rank, ms, per collective. */
  readonly latencyMs?: Readonly<Record<Collective, readonly number[]>>;
  /** The gather of `bigBytes` per rank: its time on this rank (ms), byte-exact on the root, and the process's memory (MiB). */
  readonly big?: {
    readonly ms: number;
    readonly ok: boolean;
    readonly rssBeforeMiB: number;
    readonly maxRssMiB: number;
  };
  /** The error the rank failed with. */
  readonly error?: { readonly code?: string; readonly message: string };
}

/** Options of {@link runRedisWorld}. */
export interface RedisWorldOptions {
  /** Rank processes. */
  readonly ranks: number;
  /** The Redis every rank meets in. */
  readonly redisUrl: string;
  /** The checkpoint folder. */
  readonly target: string;
  /** Sharded tensors (each 2 rows per rank × {@link worldColumns} float32). @default 16 */
  readonly tensors?: number;
  /** Timed calls of each collective per rank. @default 20 */
  readonly iters?: number;
  /** Bytes of each rank's value in the timed gathers, scatters and broadcasts. @default 1024 */
  readonly payloadBytes?: number;
  /** Bytes of each rank's value in one last gather (checked byte-exact on the root); 0: none. @default 0 */
  readonly bigBytes?: number;
  /** The group's `pieceBytes`. @default the group's default */
  readonly pieceBytes?: number;
  /** The group's collective timeout, ms (it also bounds the wait for every process to start). @default 120000 */
  readonly timeoutMs?: number;
}

/**
 * Starts `ranks` real rank processes (`redis-world-rank.ts`, each its own Node process and
 * Redis connections) that save a sharded checkpoint of small tensors to `target`, load it with
 * another sharding and check every shard byte-exact, then time each collective.
 *
 * @returns every rank's report, in rank order, and the job's wall time in seconds.
 * @throws when a process exits without a report.
 */
export async function runRedisWorld(
  o: RedisWorldOptions,
): Promise<{ reports: RankWorldReport[]; seconds: number }> {
  const groupId = `world-${randomUUID()}`;
  const t0 = performance.now();
  const reports = await Promise.all(
    Array.from(
      { length: o.ranks },
      (_, rank) =>
        new Promise<RankWorldReport>((resolve, reject) => {
          const child = spawn(
            process.execPath,
            ["--import", "tsx", "--conditions=@dcpjs/source", RANK_SCRIPT],
            {
              env: {
                ...process.env,
                RANK: String(rank),
                WORLD_SIZE: String(o.ranks),
                DCPJS_REDIS_URL: o.redisUrl,
                DCPJS_GROUP_ID: groupId,
                DCPJS_TIMEOUT_MS: String(o.timeoutMs ?? 120_000),
                ...(o.pieceBytes ? { DCPJS_PIECE_BYTES: String(o.pieceBytes) } : {}),
                WORLD_TARGET: o.target,
                WORLD_TENSORS: String(o.tensors ?? 16),
                WORLD_ITERS: String(o.iters ?? 20),
                WORLD_PAYLOAD_BYTES: String(o.payloadBytes ?? 1024),
                WORLD_BIG_BYTES: String(o.bigBytes ?? 0),
              },
              stdio: ["ignore", "pipe", "pipe"],
            },
          );
          let out = "";
          let err = "";
          child.stdout.on("data", (d) => {
            out += String(d);
          });
          child.stderr.on("data", (d) => {
            err += String(d);
          });
          child.on("error", reject);
          child.on("exit", (code) => {
            const line = out.split("\n").find((l) => l.startsWith("{"));
            if (line) resolve(JSON.parse(line) as RankWorldReport);
            else reject(new Error(`rank ${rank} exited (${code}) without a report: ${err.slice(-2000)}`));
          });
        }),
    ),
  );
  return { reports, seconds: (performance.now() - t0) / 1000 };
}

/** The `q` quantile (0…1) of `values`, nearest rank. */
export function quantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? Number.NaN;
}
