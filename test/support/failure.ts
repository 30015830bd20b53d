import { CheckpointError, CheckpointException } from "@dcpjs/core";
import { expect } from "vitest";

/**
 * The error a promise rejects with, as the failing rank's own `CheckpointError` (the first
 * failure of a `CheckpointException`); fails the test when it resolves or rejects with anything else.
 *
 * @param p - the operation expected to fail.
 */
export async function failureOf(p: Promise<unknown>): Promise<CheckpointError> {
  const e = await p.then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(e).toBeInstanceOf(CheckpointError);
  return e instanceof CheckpointException
    ? (e.failures[0]!.error as CheckpointError)
    : (e as CheckpointError);
}
