// One rank of `redis-world.ts`'s job, run as its own Node process (tsx). The environment says who
// it is (RANK, WORLD_SIZE, DCPJS_REDIS_URL, DCPJS_GROUP_ID, DCPJS_TIMEOUT_MS, DCPJS_PIECE_BYTES)
// and what to do: WORLD_TARGET (a folder), WORLD_TENSORS, WORLD_ITERS, WORLD_PAYLOAD_BYTES.
// It saves its row shards of the job's small tensors, loads column shards of them (another
// sharding) and checks them byte-exact, then times WORLD_ITERS rounds of each collective. It
// prints one JSON line, a {@link RankWorldReport}.
import { emptyTensor, load, type StateDict, save, shardTensor, type Tensor, tensor } from "@dcpjs/core";
import { compareStateDicts } from "@dcpjs/demo-kit";
import { fromEnv } from "@dcpjs/redis";
import { COLLECTIVES, type Collective, type RankWorldReport, worldColumns } from "./redis-world.js";

const env = process.env;
const rank = Number(env.RANK);

/** The job's global state dict, the same in every process: 2 rows per rank, {@link worldColumns} columns. */
function globalStateDict(world: number, tensors: number): StateDict {
  const sd: StateDict = { step: 7, config: { lr: 0.001, world } };
  const columns = worldColumns(world);
  for (let t = 0; t < tensors; t++) {
    const rows = 2 * world;
    const data = Float32Array.from({ length: rows * columns }, (_, i) => ((i * 131 + t * 1009) % 65521) / 17);
    sd[`w${t}`] = tensor("float32", [rows, columns], data);
  }
  sd.bias = tensor(
    "float32",
    [columns],
    Float32Array.from({ length: columns }, (_, i) => i / 3),
  );
  return sd;
}

/** This rank's part of `full`: the `w*` tensors sharded along `dim` (empty when `empty`), the rest as they are. */
function placed(full: StateDict, dim: number, world: number, empty: boolean): StateDict {
  const columns = worldColumns(world);
  const out: StateDict = {};
  for (const [k, v] of Object.entries(full)) {
    if (k.startsWith("w")) {
      const t = v as Tensor;
      out[k] = shardTensor(empty ? emptyTensor(t.dtype, t.shape) : t, { dim, rank, worldSize: world });
    } else if (k === "bias") {
      out[k] = empty ? emptyTensor("float32", [columns]) : v;
    } else out[k] = empty ? (k === "step" ? 0 : { lr: 0, world: 0 }) : v;
  }
  return out;
}

async function timeEach(iters: number, fn: () => Promise<unknown>): Promise<number[]> {
  const ms: number[] = [];
  for (let i = 0; i < iters; i++) {
    const t0 = performance.now();
    await fn();
    ms.push(performance.now() - t0);
  }
  return ms;
}

const started = performance.now();
let group: Awaited<ReturnType<typeof fromEnv>> | undefined;
try {
  group = await fromEnv();
  const pg = group;
  const joinMs = performance.now() - started;
  const world = pg.size;
  const full = globalStateDict(world, Number(env.WORLD_TENSORS ?? 16));
  const checkpointId = env.WORLD_TARGET!;
  const cpuMs = (since: NodeJS.CpuUsage) => {
    const { user, system } = process.cpuUsage(since);
    return (user + system) / 1000;
  };
  let t0 = performance.now();
  let cpu0 = process.cpuUsage();
  await save(placed(full, 0, world, false), { checkpointId, processGroup: pg });
  const saveMs = performance.now() - t0;
  const saveCpuMs = cpuMs(cpu0);
  const sd = placed(full, 1, world, true);
  t0 = performance.now();
  cpu0 = process.cpuUsage();
  await load(sd, { checkpointId, processGroup: pg });
  const loadMs = performance.now() - t0;
  const loadCpuMs = cpuMs(cpu0);
  const c = compareStateDicts(full, sd, true);

  const iters = Number(env.WORLD_ITERS ?? 20);
  const payload = () => ({ rank, bytes: new Uint8Array(Number(env.WORLD_PAYLOAD_BYTES ?? 1024)).fill(rank) });
  const run: Record<Collective, () => Promise<unknown>> = {
    barrier: () => pg.barrier(),
    gather: () => pg.gather(payload(), 0),
    scatter: () => pg.scatter(rank === 0 ? Array.from({ length: world }, payload) : undefined, 0),
    broadcast: () => pg.broadcast(rank === 0 ? payload() : undefined, 0),
    allGather: () => pg.allGather(payload()),
  };
  const latencyMs = {} as Record<Collective, number[]>;
  for (const name of COLLECTIVES) {
    await pg.barrier(); // every rank starts each series together
    latencyMs[name] = await timeEach(iters, run[name]);
  }
  // One gather of WORLD_BIG_BYTES per rank, checked byte-exact on the root, with the root's memory.
  const bigBytes = Number(env.WORLD_BIG_BYTES ?? 0);
  let big: RankWorldReport["big"];
  if (bigBytes > 0) {
    const mine = new Uint8Array(bigBytes);
    for (let i = 0; i < bigBytes; i += 4096) mine[i] = (rank + i / 4096) % 251;
    await pg.barrier();
    const rssBefore = process.memoryUsage().rss;
    t0 = performance.now();
    const all = await pg.gather(mine, 0);
    const ms = performance.now() - t0;
    const exact = all?.every((v, r) => {
      const got = v as Uint8Array;
      if (got.byteLength !== bigBytes) return false;
      for (let i = 0; i < bigBytes; i++)
        if (got[i] !== (i % 4096 === 0 ? (r + i / 4096) % 251 : 0)) return false;
      return true;
    });
    big = {
      ms,
      ok: exact ?? true,
      rssBeforeMiB: rssBefore / 2 ** 20,
      maxRssMiB: process.resourceUsage().maxRSS / 1024,
    };
  }
  await pg.barrier(); // no rank leaves while another still reads a collective's values
  const report: RankWorldReport = {
    rank,
    ok: c.mismatches.length === 0 && c.tensors === Object.keys(full).length - 2,
    tensors: c.tensors,
    mismatches: c.mismatches,
    joinMs,
    saveMs,
    saveCpuMs,
    loadMs,
    loadCpuMs,
    latencyMs,
    ...(big ? { big } : {}),
  };
  process.stdout.write(`${JSON.stringify(report)}\n`);
} catch (error) {
  const e = error as { code?: string; message?: string };
  process.stdout.write(
    `${JSON.stringify({ rank, ok: false, error: { code: e.code, message: String(e.message ?? e) } })}\n`,
  );
} finally {
  await group?.close();
}
