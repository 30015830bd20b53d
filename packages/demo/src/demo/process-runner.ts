import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { CheckpointError, type ProgressCallback } from "@dcpjs/core";
import type { DemoPhase, RankOutcome } from "./demo-phases.js";

/** Messages a rank process sends its parent over IPC. */
export type RankMessage =
  | { readonly type: "progress"; readonly bytes: number; readonly items: number }
  | { readonly type: "done"; readonly outcome: RankOutcome }
  | { readonly type: "failed"; readonly message: string };

/** What every rank process of a phase needs. */
export interface PhaseProcessOptions {
  /** The checkpoint folder or URI. */
  readonly to: string;
  /** The models folder. */
  readonly models: string;
  /** Data files per rank. */
  readonly threadCount: number;
  /** The Redis the ranks meet in. */
  readonly redisUrl: string;
  /** Collective timeout in ms. */
  readonly timeoutMs: number;
}

/**
 * Runs one demo phase as `ranks` separate processes of `dcp-demo` (`dcp-demo demo-rank`), which meet
 * in Redis through the environment (`RANK`, `WORLD_SIZE`, `DCPJS_REDIS_URL`, `DCPJS_GROUP_ID`).
 *
 * @param phase - the phase.
 * @param ranks - how many processes.
 * @param options - see {@link PhaseProcessOptions}.
 * @param onProgress - receives every rank's progress.
 * @returns each rank's outcome, in rank order.
 * @throws {@link CheckpointError} `IO_ERROR` naming the ranks that failed or died.
 */
export async function runPhaseInProcesses(
  phase: DemoPhase,
  ranks: number,
  options: PhaseProcessOptions,
  onProgress: ProgressCallback,
): Promise<RankOutcome[]> {
  const groupId = `demo-${randomUUID()}`;
  const script = process.argv[1]!;
  const children: ChildProcess[] = Array.from({ length: ranks }, (_, rank) =>
    spawn(process.execPath, [...process.execArgv, script, "demo-rank"], {
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      env: {
        ...process.env,
        RANK: String(rank),
        WORLD_SIZE: String(ranks),
        DCPJS_REDIS_URL: options.redisUrl,
        DCPJS_GROUP_ID: groupId,
        DCPJS_TIMEOUT_MS: String(options.timeoutMs),
        DCP_DEMO_PHASE: phase,
        DCP_DEMO_TO: options.to,
        DCP_DEMO_MODELS: options.models,
        DCP_DEMO_THREAD_COUNT: String(options.threadCount),
      },
    }),
  );
  const results = await Promise.all(
    children.map(
      (child, rank) =>
        new Promise<RankOutcome | string>((resolve) => {
          let outcome: RankOutcome | string = `rank ${rank} exited without a result`;
          child.on("message", (m: RankMessage) => {
            if (m.type === "progress") onProgress({ bytes: m.bytes, items: m.items });
            else if (m.type === "done") outcome = m.outcome;
            else outcome = `rank ${rank}: ${m.message}`;
          });
          child.on("exit", (code, signal) => {
            if (typeof outcome === "string" && (code !== 0 || signal))
              outcome = `${outcome} (exit ${signal ?? code})`;
            resolve(outcome);
          });
        }),
    ),
  );
  const failures = results.filter((r): r is string => typeof r === "string");
  if (failures.length > 0)
    throw new CheckpointError("IO_ERROR", `The ${phase} phase failed: ${failures.join("; ")}`);
  return results as RankOutcome[];
}
