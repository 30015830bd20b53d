/** Decimal units, as `parseSize` reads them (1 KB = 1000 bytes). */
const UNITS = ["KB", "MB", "GB", "TB", "PB"] as const;

/**
 * A byte count as people read it: `384 B`, `1.5 KB`, `772.7 MB`, `4.2 GB` (decimal units, as
 * `parseSize` and Hugging Face write them; one decimal from 1 KB up).
 *
 * @param bytes - a count of bytes ≥ 0.
 */
export function formatBytes(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`;
  let value = bytes;
  let unit = 0;
  for (value /= 1000; value >= 999.95 && unit < UNITS.length - 1; unit++) value /= 1000;
  return `${value.toFixed(1)} ${UNITS[unit]}`;
}

/** Words whose plural is not the singular plus `s`. */
const PLURALS: Readonly<Record<string, string>> = { entry: "entries" };

/**
 * A count and its noun, singular for exactly one: `1 rank`, `4 ranks`, `1 entry`, `0 entries`.
 *
 * @param n - the count.
 * @param noun - the singular noun (`rank`, `entry`, `file`, …).
 */
export function plural(n: number, noun: string): string {
  return `${n} ${n === 1 ? noun : (PLURALS[noun] ?? `${noun}s`)}`;
}
