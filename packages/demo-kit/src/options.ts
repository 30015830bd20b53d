import { InvalidArgumentError } from "commander";

/**
 * Parses a command-line value as an integer ≥ 1 (a commander option parser), for `dcp-demo` and
 * the benchmarks.
 *
 * @param value - the raw value.
 * @throws `InvalidArgumentError` (commander's) saying what was expected and found.
 */
export function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1)
    throw new InvalidArgumentError(`Expected an integer >= 1, got ${value}`);
  return n;
}
