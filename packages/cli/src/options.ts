import { statSync } from "node:fs";
import { CheckpointError } from "@dcpjs/core";
import { InvalidArgumentError } from "commander";

/** The exit codes, as the help of `dcp` and its commands states them. */
export const EXIT_CODES =
  "\nExit codes: 0 done; 1 a damaged or failed checkpoint or operation; 2 bad arguments.";

/**
 * Refuses an option naming a folder that is something else (a file): the read cache would fail
 * deep inside with a raw `ENOTDIR`.
 *
 * @param option - the option's name, for the message (`--cache-dir`).
 * @param path - its value.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when `path` is there and not a folder.
 */
export function assertFolderOrAbsent(option: string, path: string): void {
  const stat = statSync(path, { throwIfNoEntry: false });
  if (stat && !stat.isDirectory())
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected ${option} to be a folder (or a path to create one), got a file: ${path}`,
    );
}

/**
 * Parses a command-line value as an integer ≥ 1 (a commander option parser).
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

/**
 * Parses a command-line value as an integer ≥ 0 (a commander option parser), e.g. `--grace 0`.
 *
 * @param value - the raw value.
 * @throws `InvalidArgumentError` (commander's) saying what was expected and found.
 */
export function nonNegativeInt(value: string): number {
  const n = value.trim() === "" ? Number.NaN : Number(value);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new InvalidArgumentError(`Expected an integer >= 0, got ${value}`);
  return n;
}

const UNITS: Readonly<Record<string, number>> = {
  "": 1,
  B: 1,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  TB: 1e12,
  KIB: 2 ** 10,
  MIB: 2 ** 20,
  GIB: 2 ** 30,
  TIB: 2 ** 40,
};

/**
 * Parses a size as Hugging Face writes them (`5GB` = 5 × 10⁹ bytes, `5GiB` = 5 × 2³⁰, or plain
 * bytes), as a commander option parser.
 *
 * @param value - the raw value, e.g. `500MB`.
 * @returns bytes, an integer ≥ 1.
 * @throws `InvalidArgumentError` (commander's) saying what was expected and found.
 */
export function parseSize(value: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(value);
  const unit = m ? UNITS[m[2]!.toUpperCase()] : undefined;
  const bytes = m && unit ? Math.floor(Number(m[1]) * unit) : Number.NaN;
  if (!Number.isSafeInteger(bytes) || bytes < 1)
    throw new InvalidArgumentError(`Expected a size such as 5GB, 500MB or 1048576, got ${value}`);
  return bytes;
}
