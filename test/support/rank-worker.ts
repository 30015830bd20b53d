// One rank of a multi-process test job, run as its own Node process (tsx). The environment says
// who it is (RANK, WORLD_SIZE, DCPJS_REDIS_URL, DCPJS_GROUP_ID, DCPJS_TIMEOUT_MS) and what to do:
//   MODE=save | load | load-whole   TARGET=folder or s3:// URI
//   MODE=barriers                   join, print "joined", then run barriers until one fails (or 60 s)
//   SEED=n                          offsets every tensor's seed (two jobs save different data)
//   EXIT_AT_BROADCAST_RANK=r        that rank SIGKILLs itself when it reaches its first broadcast (in a
//                                   save: after its last contribution, before the commit's broadcast)
//   FAIL_RANK + FAIL_IN=writeData   that rank throws in writeData (an injected fault)
//   HANG_RANK + HANG_AFTER_BYTES=n  that rank's writes stop for good once n bytes are written, and it
//                                   prints "mid-write" (to be killed while its upload is in flight)
// It prints one JSON line: {"rank":r,"ok":true,...} or {"rank":r,"error":{...}}.
import {
  CheckpointError,
  CheckpointException,
  createStorageReader,
  emptyTensor,
  FileSystemWriter,
  LocalFileSystem,
  load,
  loadStateDictFromKeys,
  type ProcessGroup,
  type StateDict,
  save,
  shardTensor,
  type Tensor,
} from "@dcpjs/core";
import type {
  CreateStreamOptions,
  FileSystemBase,
  FileWriteStream,
  SavePlan,
  SavePlanner,
  StorageWriter,
  WriteResult,
} from "@dcpjs/core/extend";
import { compareStateDicts } from "@dcpjs/demo-kit";
import { fromEnv } from "@dcpjs/redis";
import { S3FileSystem, S3StorageWriter } from "@dcpjs/s3";
import { randomTensor } from "./tensors.js";

const env = process.env;
const rank = Number(env.RANK);
const target = env.TARGET!;

/** The job's global state dict, the same in every process. */
export function globalStateDict(): StateDict {
  const seed = Number(env.SEED ?? 0) * 10;
  return {
    rows: randomTensor("float32", [40, 257], seed + 1),
    cols: randomTensor("int32", [33, 50], seed + 2),
    rep: randomTensor("bfloat16", [64], seed + 3),
    big: randomTensor("float32", [6144, 2048], seed + 4), // 48 MiB: 12 MiB per rank of 4, so uploads are multipart
    step: 100,
    config: { lr: 0.001, name: "multi-process", betas: [0.9, 0.999] },
  };
}

function placed(
  full: StateDict,
  dims: Record<string, number>,
  pgRank: number,
  world: number,
  empty: boolean,
): StateDict {
  const out: StateDict = {};
  for (const [k, v] of Object.entries(full)) {
    if (typeof v === "object" && v !== null && "dtype" in v) {
      const t = empty ? emptyTensor((v as Tensor).dtype, (v as Tensor).shape) : (v as Tensor);
      out[k] = k in dims ? shardTensor(t, { dim: dims[k]!, rank: pgRank, worldSize: world }) : t;
    } else {
      out[k] = empty
        ? Array.isArray(v)
          ? []
          : typeof v === "object"
            ? { lr: 0, name: "", betas: [] }
            : 0
        : v;
    }
  }
  return out;
}

function report(value: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ rank, ...value })}\n`);
}

function describeError(e: unknown): Record<string, unknown> {
  if (e instanceof CheckpointException)
    return { name: e.name, code: e.code, step: e.step, failedRanks: e.failedRanks, message: e.message };
  if (e instanceof CheckpointError) return { name: e.name, code: e.code, message: e.message };
  return { name: (e as Error).name, message: String((e as Error).message ?? e) };
}

class FaultyWriter extends FileSystemWriter {
  override async writeData(plan: SavePlan, planner: SavePlanner): Promise<WriteResult[]> {
    throw new Error(
      `injected fault in writeData on rank ${rank} (${plan.items.length} items, ${typeof planner})`,
    );
  }
}

/** Wraps a file system so that writes stop for good after `limit` bytes (the process stays responsive). */
function hangingAfter(fs: FileSystemBase, limit: number): FileSystemBase {
  let written = 0;
  const hang = async (): Promise<never> => {
    setTimeout(() => process.stdout.write("mid-write\n"), 500);
    return new Promise<never>(() => {});
  };
  const createStream = async (path: string, mode: "wb" | "rb", options?: CreateStreamOptions) => {
    if (mode === "rb") return fs.createStream(path, "rb", options);
    const stream = await fs.createStream(path, "wb", options);
    const wrapped: FileWriteStream = {
      write: async (chunk) => {
        if (written >= limit) return hang();
        written += chunk.byteLength;
        await stream.write(chunk);
        if (written >= limit) return hang();
      },
      tell: () => stream.tell(),
      sync: () => stream.sync(),
      close: () => stream.close(),
      abort: (reason) => stream.abort(reason),
    };
    return wrapped;
  };
  return {
    createStream: createStream as FileSystemBase["createStream"],
    concatPath: (p, q) => fs.concatPath(p, q),
    initPath: (p) => fs.initPath(p),
    rename: (p, q, o) => fs.rename(p, q, o),
    mkdir: (p) => fs.mkdir(p),
    exists: (p) => fs.exists(p),
    rmFile: (p) => fs.rmFile(p),
    validateCheckpointId: (id) => fs.validateCheckpointId(id),
  };
}

function writerFor(): StorageWriter {
  if (String(rank) === env.FAIL_RANK) {
    return new FaultyWriter({
      path: target,
      ...(target.startsWith("s3://") ? { fs: new S3FileSystem(), syncFiles: false } : {}),
    });
  }
  const onS3 = target.startsWith("s3://");
  if (String(rank) !== env.HANG_RANK)
    return onS3 ? new S3StorageWriter({ path: target }) : new FileSystemWriter({ path: target });
  // The hanging rank: the same writer over a file system whose writes stop (prefixes stay `__{rank}_`).
  // 5 MiB parts: two whole parts are handed to the upload before the writes stop, so the
  // multipart upload exists when the rank is killed.
  const s3 = () => new S3FileSystem({ clientConfig: { partSize: 5 * 2 ** 20 } });
  const fs = hangingAfter(onS3 ? s3() : new LocalFileSystem(), Number(env.HANG_AFTER_BYTES));
  return new FileSystemWriter({ path: target, fs, syncFiles: !onS3 });
}

/** The group, except that on EXIT_AT_BROADCAST_RANK a broadcast kills the process (a fault injected by the test). */
function dyingAtBroadcast(group: ProcessGroup): ProcessGroup {
  if (String(rank) !== env.EXIT_AT_BROADCAST_RANK) return group;
  return new Proxy(group, {
    get(t, p, r) {
      if (p === "broadcast") return () => process.kill(process.pid, "SIGKILL");
      const v = Reflect.get(t, p, r);
      return typeof v === "function" ? v.bind(t) : v;
    },
  });
}

let joined: Awaited<ReturnType<typeof fromEnv>> | undefined;
try {
  joined = await fromEnv();
  const pg = dyingAtBroadcast(joined);
  const full = globalStateDict();
  if (env.MODE === "barriers") {
    process.stdout.write("joined\n");
    const until = Date.now() + 60_000;
    while (Date.now() < until) {
      await pg.barrier();
      await new Promise((r) => setTimeout(r, 20));
    }
    report({ ok: true });
  } else if (env.MODE === "save") {
    await save(placed(full, { rows: 0, cols: 1, big: 0 }, pg.rank, pg.size, false), {
      storageWriter: writerFor(),
      processGroup: pg,
    });
    report({ ok: true });
  } else if (env.MODE === "load") {
    const sd = placed(full, { rows: 1, cols: 0, big: 1 }, pg.rank, pg.size, true);
    await load(sd, { storageReader: await createStorageReader(target), processGroup: pg });
    const c = compareStateDicts(full, sd, true);
    report({ ok: c.mismatches.length === 0, tensors: c.tensors, values: c.values, mismatches: c.mismatches });
  } else {
    const sd = await loadStateDictFromKeys({
      storageReader: await createStorageReader(target),
      processGroup: pg,
    });
    const c = compareStateDicts(full, sd, true);
    report({ ok: c.mismatches.length === 0, tensors: c.tensors, values: c.values, mismatches: c.mismatches });
  }
} catch (error) {
  report({ error: describeError(error) });
} finally {
  await joined?.close();
}
