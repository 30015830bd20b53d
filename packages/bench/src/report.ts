import { PerformanceObserver } from "node:perf_hooks";

/** One measured row of a benchmark table. */
export interface Row {
  /** What was measured. */
  readonly name: string;
  /** Bytes moved. */
  readonly bytes: number;
  /** Best time of the repetitions, in seconds. */
  readonly seconds: number;
  /** Extra columns. */
  readonly extra?: Readonly<Record<string, string | number>>;
}

/** MB/s of a row (decimal MB). */
export function mbps(row: Row): number {
  return row.bytes / 1e6 / row.seconds;
}

/**
 * Runs `fn` `reps` times and returns the fastest run's seconds (best of N).
 *
 * @param reps - repetitions, ≥ 1.
 * @param fn - one run; returns its own timing in seconds (so set-up can be excluded).
 */
export async function bestOf(reps: number, fn: (rep: number) => Promise<number>): Promise<number> {
  let best = Number.POSITIVE_INFINITY;
  for (let i = 0; i < reps; i++) best = Math.min(best, await fn(i));
  return best;
}

/**
 * The main thread's busy seconds (event-loop utilisation's active time) and garbage-collection
 * milliseconds of each span measured by {@link timed}, keyed by the span's seconds, so that
 * {@link report} can show them next to the row that reports those seconds.
 */
const spans = new Map<number, { busy: number; gcMs: number }>();

/** Garbage collections of this process while a {@link timed} span runs: [start, duration] in ms. */
const collections: [number, number][] = [];
let spansOpen = 0;
new PerformanceObserver((list) => {
  if (spansOpen === 0) return;
  for (const e of list.getEntries()) collections.push([e.startTime, e.duration]);
}).observe({ entryTypes: ["gc"] });

/**
 * Times one async call in seconds, and records how long this process's main thread was busy
 * meanwhile (`performance.eventLoopUtilization`: the headroom a 2-core machine has left) and how
 * long V8's garbage collections took (`PerformanceObserver` `gc` entries in the span).
 */
export async function timed(fn: () => Promise<unknown>): Promise<number> {
  spansOpen++;
  const elu0 = performance.eventLoopUtilization();
  const t0 = performance.now();
  let t1: number;
  let busy: number;
  try {
    await fn();
    t1 = performance.now();
    busy = performance.eventLoopUtilization(elu0).active / 1000;
    // The observer hears of a collection a moment after it: let the last ones arrive.
    await new Promise((resolve) => setTimeout(resolve, 20));
  } finally {
    spansOpen--;
  }
  const seconds = (t1 - t0) / 1000;
  let gcMs = 0;
  for (const [start, duration] of collections) if (start >= t0 && start < t1) gcMs += duration;
  if (spansOpen === 0) collections.length = 0;
  spans.set(seconds, { busy, gcMs });
  return seconds;
}

/** The garbage-collection milliseconds of a span timed by {@link timed} (by its seconds), if it was. */
export function gcMsOf(seconds: number): number | undefined {
  return spans.get(seconds)?.gcMs;
}

/** The main thread's busy seconds per GiB of a row timed by {@link timed}, if it was. */
function busyPerGiB(row: Row): string {
  const span = spans.get(row.seconds);
  return span === undefined || row.bytes === 0 ? "" : (span.busy / (row.bytes / 1024 ** 3)).toFixed(3);
}

/**
 * Prints a table of rows (name, MB, seconds, MB/s, extra columns) and then one JSON line with
 * the benchmark's name, parameters, rows and ratios.
 *
 * @param bench - the benchmark's name.
 * @param params - its parameters.
 * @param rows - the rows.
 * @param ratios - named ratios (ours ÷ baseline, higher is better unless named otherwise).
 * @param notes - lines printed under the table (skipped baselines, cache state…).
 */
export function report(
  bench: string,
  params: Record<string, unknown>,
  rows: readonly Row[],
  ratios: Record<string, number | null>,
  notes: readonly string[] = [],
): void {
  // Every row timed in this process gets the main thread's busy seconds per GiB and its GC time.
  rows = rows.map((r) => {
    const busy = busyPerGiB(r);
    const gcMs = gcMsOf(r.seconds);
    return busy === ""
      ? r
      : { ...r, extra: { ...r.extra, "main s/GiB": busy, "GC ms": (gcMs ?? 0).toFixed(0) } };
  });
  const extraKeys = [...new Set(rows.flatMap((r) => Object.keys(r.extra ?? {})))];
  const header = ["", "MB", "s (best)", "MB/s", ...extraKeys];
  const body = rows.map((r) => [
    r.name,
    (r.bytes / 1e6).toFixed(1),
    r.seconds.toFixed(3),
    mbps(r).toFixed(0),
    ...extraKeys.map((k) => String(r.extra?.[k] ?? "")),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  console.log(
    `\n${bench} ${Object.entries(params)
      .map(([k, v]) => `${k}=${v}`)
      .join(" ")}`,
  );
  console.log(line(header));
  for (const b of body) console.log(line(b));
  for (const [k, v] of Object.entries(ratios)) console.log(`  ${k}: ${v === null ? "n/a" : v.toFixed(2)}`);
  for (const n of notes) console.log(`  note: ${n}`);
  console.log(
    JSON.stringify({
      bench,
      params,
      rows: rows.map((r) => ({ ...r, mbps: Number(mbps(r).toFixed(1)) })),
      ratios,
      notes,
    }),
  );
}
