import { appendFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FAULTS, type Fault, type FaultProxy, startFaultProxy } from "../support/fault-proxy.js";
import { freshUri, s3Env, s3Server } from "../support/s3.js";
import { runStarvedRound } from "../support/starved-round.js";

// The fault matrix of faults.test.ts rerun with the client process held to ~25 % of a CPU by
// SIGSTOP/SIGCONT (test/support/cpu-starve.ts), in a child process with no uncaughtException
// listener: each round saves, loads back with all three readers and compares every byte. By
// default a bounded sample runs (25 % of five kinds: those that cut connections mid-transfer, 503s
// and flipped bytes); DCPJS_STARVED_MATRIX=full runs every kind at 5 % and 25 % (about 4½ minutes).
const full = process.env.DCPJS_STARVED_MATRIX === "full";
const kinds: readonly Fault[] = full
  ? [...FAULTS, "reset-mid-request", "reset-after"]
  : ["reset-mid", "lost-response", "reset-mid-request", "503", "flip"];
const rates = full ? [0.05, 0.25] : [0.25];
/** DCPJS_STARVED_REPORT=file appends one line per round: kind, rate, faults injected, result. */
const report = process.env.DCPJS_STARVED_REPORT;

let proxy: FaultProxy;
beforeAll(async () => {
  Object.assign(process.env, s3Env());
  proxy = await startFaultProxy(s3Server().endpoint);
});
afterAll(async () => {
  await proxy.close();
});

describe("the fault matrix with the client CPU-starved", () => {
  describe.each(rates)("at a %s per-request fault rate", (rate) => {
    it.each(kinds)(
      "%s: the save and every load are byte-exact or fail typed, and the process never dies",
      async (fault) => {
        const before = proxy.stats.faults[fault] ?? 0;
        // At `rate`, and always until the first one lands (body faults apply only to GETs with a
        // body), so that every round meets its fault even at 5 %.
        const landed = () => (proxy.stats.faults[fault] ?? 0) > before;
        proxy.setFault(() => (!landed() || Math.random() < rate ? fault : undefined));
        // Stalls end only by the child's socket timeout (5 s, retried): at 25 % a round takes ~90 s.
        const { exit, result, stderr } = await runStarvedRound(freshUri(), proxy.endpoint, "load", 170_000);
        proxy.setFault(() => undefined);
        const injected = (proxy.stats.faults[fault] ?? 0) - before;
        expect({ exit, stderr: /Unhandled|uncaught/i.test(stderr) ? stderr : "" }).toEqual({
          exit: "0",
          stderr: "",
        });
        expect(result).toMatch(/^(ok|failed [A-Z_,]+ \| .*)$/);
        // The round met its fault: a round that injected none would prove nothing.
        expect(injected).toBeGreaterThan(0);
        // Opt-in record of each round (for the figures in docs/s3.md), not test output.
        if (report) await appendFile(report, `${fault}\t${rate}\t${injected}\t${result}\n`);
      },
      180_000,
    );
  });
});
