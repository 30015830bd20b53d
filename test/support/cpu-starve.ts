/** A process held to a fraction of the CPU by {@link starveCpu}. */
export interface Starvation {
  /** Stop/continue cycles completed so far. */
  readonly cycles: number;
  /** Ends the starvation and lets the process run freely (SIGCONT); idempotent. */
  stop(): void;
}

/** Options of {@link starveCpu}. */
export interface StarveOptions {
  /** The fraction of each period the process may run, in (0, 1]. @default 0.25 */
  readonly duty?: number;
  /** One run-then-stop cycle, in milliseconds. @default 100 */
  readonly periodMs?: number;
}

/**
 * Holds a process to `duty` of the CPU by SIGSTOP and SIGCONT: it runs `duty × periodMs` ms,
 * then is stopped for the rest of each period — a busy machine as the process sees it (timers fire
 * late, sockets pile up events while it is stopped). Ends by itself when the process is gone.
 * Always call {@link Starvation.stop}: a process left stopped never finishes.
 *
 * @param pid - the process to starve (a child of this one).
 * @param options - duty and period.
 */
export function starveCpu(pid: number, options: StarveOptions = {}): Starvation {
  const duty = options.duty ?? 0.25;
  const period = options.periodMs ?? 100;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let cycles = 0;
  const signal = (s: NodeJS.Signals): boolean => {
    try {
      process.kill(pid, s);
      return true;
    } catch {
      return false; // gone
    }
  };
  const run = () => {
    if (stopped || !signal("SIGCONT")) return;
    timer = setTimeout(hold, duty * period);
  };
  const hold = () => {
    if (stopped || !signal("SIGSTOP")) return;
    cycles++;
    timer = setTimeout(run, (1 - duty) * period);
  };
  run();
  return {
    get cycles() {
      return cycles;
    },
    stop() {
      stopped = true;
      clearTimeout(timer);
      signal("SIGCONT");
    },
  };
}
