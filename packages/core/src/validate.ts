import { CheckpointError } from "./errors.js";

/**
 * Checks that an option or argument is a safe integer in `[min, max]`.
 *
 * @param name - its name, as the caller wrote it (e.g. `threadCount`).
 * @param value - the value given.
 * @param min - the smallest accepted value.
 * @param max - the largest accepted value. @default `Number.MAX_SAFE_INTEGER`
 * @param unit - appended to the bounds in the message, e.g. `" bytes"`. @default ""
 * @throws {@link CheckpointError} `INVALID_ARGUMENT`: "Expected `name` to be an integer between
 * min and max, got X (type)".
 */
export function assertIntegerInRange(
  name: string,
  value: unknown,
  min: number,
  max: number = Number.MAX_SAFE_INTEGER,
  unit = "",
): asserts value is number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min || value > max) {
    const upper = max === Number.MAX_SAFE_INTEGER ? "" : ` and ${max}${unit}`;
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected \`${name}\` to be an integer ${upper ? "between" : ">="} ${min}${unit}${upper}, got ${String(value)} (${typeof value})`,
    );
  }
}

/**
 * Checks the arguments of a ranged read (`FileReadStream.read`): a byte offset and a length,
 * both integers ≥ 0.
 *
 * @param offset - byte offset in the file.
 * @param length - bytes to read.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` otherwise.
 */
export function assertReadRange(offset: unknown, length: unknown): void {
  assertIntegerInRange("offset", offset, 0, Number.MAX_SAFE_INTEGER, " bytes");
  assertIntegerInRange("length", length, 0, Number.MAX_SAFE_INTEGER, " bytes");
}
