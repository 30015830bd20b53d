import { CheckpointError, type ProgressCallback } from "@dcpjs/core";
import { fromEnv } from "@dcpjs/redis";
import { type DemoPhase, prepareSource, runPhase } from "./demo-phases.js";
import type { RankMessage } from "./process-runner.js";

/** How often a rank process reports progress to its parent, in ms. */
const PROGRESS_INTERVAL_MS = 100;

function send(message: RankMessage): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send) resolve();
    else process.send(message, undefined, {}, () => resolve());
  });
}

/**
 * The body of one `dcp-demo --procs` rank process: reads `DCP_DEMO_PHASE`, `DCP_DEMO_TO`,
 * `DCP_DEMO_MODELS`, `DCP_DEMO_THREAD_COUNT`, joins the Redis group from the environment
 * (`RANK`, `WORLD_SIZE`, `DCPJS_REDIS_URL`, `DCPJS_GROUP_ID`), runs the phase, and reports progress
 * and its outcome to the parent over IPC.
 *
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when the phase is unknown.
 */
export async function runDemoRank(): Promise<void> {
  const env = process.env;
  const phase = env.DCP_DEMO_PHASE as DemoPhase;
  if (!["save", "load", "load-whole"].includes(phase)) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected DCP_DEMO_PHASE to be save, load or load-whole, got ${JSON.stringify(phase)}`,
    );
  }
  let pending = { bytes: 0, items: 0 };
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    if (pending.items > 0) void send({ type: "progress", ...pending });
    pending = { bytes: 0, items: 0 };
  };
  const onProgress: ProgressCallback = (d) => {
    pending.bytes += d.bytes;
    pending.items += d.items;
    timer ??= setTimeout(() => {
      timer = undefined;
      flush();
    }, PROGRESS_INTERVAL_MS);
  };
  const source = await prepareSource(env.DCP_DEMO_MODELS);
  const pg = await fromEnv();
  try {
    const outcome = await runPhase(phase, source.stateDict, pg, env.DCP_DEMO_TO!, {
      threadCount: Number(env.DCP_DEMO_THREAD_COUNT ?? 1),
      onProgress,
    });
    clearTimeout(timer);
    flush();
    await send({ type: "done", outcome });
  } catch (error) {
    await send({ type: "failed", message: error instanceof Error ? error.message : String(error) });
    process.exitCode = 1;
  } finally {
    await pg.close();
    process.disconnect?.();
  }
}
