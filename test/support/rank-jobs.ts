import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";

const WORKER = fileURLToPath(new URL("./rank-worker.ts", import.meta.url));

/** What a rank worker (test/support/rank-worker.ts) prints as its last line. */
export interface RankReport {
  rank: number;
  ok?: boolean;
  tensors?: number;
  mismatches?: string[];
  error?: { code?: string; step?: string; failedRanks?: number[]; message: string };
}

/**
 * Starts `world` real rank processes of one job (test/support/rank-worker.ts) with a fresh group
 * id (unless `env` names one) and a 60 s collective timeout (unless `env` sets one).
 */
export function spawnRankWorkers(world: number, env: Record<string, string>): ChildProcess[] {
  const groupId = `e2e-${randomUUID()}`;
  return Array.from({ length: world }, (_, rank) =>
    spawn(process.execPath, ["--import", "tsx", "--conditions=@dcpjs/source", WORKER], {
      env: {
        ...process.env,
        DCPJS_GROUP_ID: groupId,
        DCPJS_TIMEOUT_MS: "60000",
        RANK: String(rank),
        WORLD_SIZE: String(world),
        ...env,
      },
      stdio: ["ignore", "pipe", "pipe"],
    }),
  );
}

/** One rank's outcome: its report (undefined when it was killed), its stderr, and when it exited. */
export interface RankOutcome {
  readonly report: RankReport | undefined;
  readonly stderr: string;
  readonly exitedAt: number;
}

/** Waits for every process and returns its outcome. */
export function reports(children: ChildProcess[]): Promise<RankOutcome[]> {
  return Promise.all(
    children.map(
      (child) =>
        new Promise<RankOutcome>((resolve, reject) => {
          let out = "";
          let stderr = "";
          child.stdout!.on("data", (d) => {
            out += String(d);
          });
          child.stderr!.on("data", (d) => {
            stderr += String(d);
          });
          child.on("exit", (_code, signal) => {
            const line = out.split("\n").find((l) => l.startsWith("{"));
            if (!line && signal !== "SIGKILL") reject(new Error(`rank exited without a report: ${stderr}`));
            const report = line ? (JSON.parse(line) as RankReport) : undefined;
            resolve({ report, stderr, exitedAt: performance.now() });
          });
        }),
    ),
  );
}

/** Resolves once `child` prints `text` on stdout; rejects if it exits first. */
export function waitForText(child: ChildProcess, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    child.stdout!.on("data", (d) => {
      if (String(d).includes(text)) resolve();
    });
    child.on("exit", () => reject(new Error(`exited before printing ${text}`)));
  });
}
