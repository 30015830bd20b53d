import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startRedisServer } from "../../../test/support/redis-server.js";
import { COLLECTIVES, quantile, runRedisWorld } from "./redis-world.js";

/** Options of {@link redisCollectives}. */
export interface RedisCollectivesOptions {
  /** Rank processes. */
  readonly ranks: number;
  /** Timed calls of each collective per rank. */
  readonly iters: number;
  /** Bytes of each rank's value in the timed gathers, scatters and broadcasts. */
  readonly payloadBytes: number;
  /** Sharded tensors in the checkpoint. */
  readonly tensors: number;
  /** MiB of each rank's value in one last gather (0: none). */
  readonly bigMib: number;
  /** The group's piece size, bytes (default: the group's). */
  readonly pieceBytes?: number;
  /** A Redis to use instead of a `redis-server` of the benchmark's own. */
  readonly redisUrl?: string;
}

/**
 * `redis-collectives`: `ranks` real processes, each a rank with its own Redis connections, save a
 * sharded checkpoint of small tensors, load it with another sharding (each rank checks its
 * shards byte-exact), and time `iters` calls of each collective; prints each collective's median
 * and p95 latency over every rank's calls, and the save and load wall times.
 */
export async function redisCollectives(o: RedisCollectivesOptions): Promise<void> {
  const server = o.redisUrl
    ? { url: o.redisUrl, stop: async () => {} }
    : await startRedisServer(() => {}, { own: true });
  const dir = await mkdtemp(join(tmpdir(), "dcpjs-bench-redis-"));
  try {
    const { reports, seconds } = await runRedisWorld({
      ranks: o.ranks,
      redisUrl: server.url,
      target: join(dir, "ckpt"),
      tensors: o.tensors,
      iters: o.iters,
      payloadBytes: o.payloadBytes,
      bigBytes: o.bigMib * 2 ** 20,
      ...(o.pieceBytes ? { pieceBytes: o.pieceBytes } : {}),
    });
    const failed = reports.filter((r) => !r.ok || r.big?.ok === false);
    const ms = (v: number) => v.toFixed(1);
    const rows: string[][] = COLLECTIVES.map((name) => {
      const all = reports.flatMap((r) => r.latencyMs?.[name] ?? []);
      const root = reports[0]?.latencyMs?.[name] ?? [];
      return [
        name,
        ms(quantile(all, 0.5)),
        ms(quantile(all, 0.95)),
        ms(quantile(root, 0.5)),
        String(all.length),
      ];
    });
    for (const [name, key] of [
      ["save (whole)", "saveMs"],
      ["save, CPU of the rank", "saveCpuMs"],
      ["load (whole)", "loadMs"],
      ["load, CPU of the rank", "loadCpuMs"],
      ["join", "joinMs"],
    ] as const) {
      const all = reports.map((r) => r[key] ?? Number.NaN);
      rows.push([
        name,
        ms(quantile(all, 0.5)),
        ms(quantile(all, 0.95)),
        ms(reports[0]?.[key] ?? Number.NaN),
        String(all.length),
      ]);
    }
    const header = ["", "median ms", "p95 ms", "rank 0 median ms", "samples"];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (cells: string[]) =>
      cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
    console.log(
      `\nredis-collectives ranks=${o.ranks} iters=${o.iters} payloadBytes=${o.payloadBytes} tensors=${o.tensors}`,
    );
    console.log(line(header));
    for (const r of rows) console.log(line(r));
    console.log(
      `  ${o.ranks - failed.length} of ${o.ranks} ranks loaded their shards byte-exact (${reports[0]?.tensors ?? 0} tensors each); job wall time ${seconds.toFixed(1)} s (process start included)`,
    );
    const big = reports[0]?.big;
    if (big)
      console.log(
        `  gather of ${o.ranks} × ${o.bigMib} MiB: ${(big.ms / 1000).toFixed(2)} s on rank 0, ${big.ok ? "byte-exact" : "NOT byte-exact"}; rank 0's RSS ${big.rssBeforeMiB.toFixed(0)} MiB before, peak ${big.maxRssMiB.toFixed(0)} MiB (the gathered values: ${o.ranks * o.bigMib} MiB)`,
      );
    for (const f of failed.slice(0, 5))
      console.log(`  rank ${f.rank} failed: ${f.error?.message ?? f.mismatches?.join("; ")}`);
    console.log(
      "  note: a rank's call time includes waiting for the slowest rank to arrive; every rank is its own Node process on this machine's cores",
    );
    console.log(
      JSON.stringify({ bench: "redis-collectives", params: o, rows, big, failed: failed.length, seconds }),
    );
    if (failed.length > 0) process.exitCode = 1;
  } finally {
    await rm(dir, { recursive: true, force: true });
    await server.stop();
  }
}
