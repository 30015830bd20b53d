// What test/conformance/filesystem-conformance.ts takes from "vitest", for running it inside a
// page: describe/it register the cases, `expect` is Vitest's own (@vitest/expect on chai), and
// `runRegistered` runs them in order and reports each one. Plain JavaScript: chai and
// @vitest/expect are Vitest's own dependencies, resolved from the store by the page's bundle only.
import { JestAsymmetricMatchers, JestChaiExpect, JestExtend } from "@vitest/expect";
import * as chai from "chai";

chai.use(JestExtend);
chai.use(JestChaiExpect);
chai.use(JestAsymmetricMatchers);

/** Vitest's `expect`, as the suites use it. */
export const expect = chai.expect;

class Skipped extends Error {}

/** @type {string[]} */
const prefix = [];
/** @type {{ name: string, fn: (ctx: { skip(): never }) => unknown }[]} */
const cases = [];

/** Registers the cases `fn` declares under `name`. @param {string} name @param {() => void} fn */
export function describe(name, fn) {
  prefix.push(name);
  try {
    fn();
  } finally {
    prefix.pop();
  }
}

/** Registers a case. @param {string} name @param {(ctx: { skip(): never }) => unknown} fn */
export function it(name, fn) {
  cases.push({ name: [...prefix, name].join(" > "), fn });
}

/**
 * Runs every registered case in order.
 * @returns {Promise<{ name: string, status: "passed" | "failed" | "skipped", error?: string }[]>}
 */
export async function runRegistered() {
  const results = [];
  const ctx = {
    skip() {
      throw new Skipped();
    },
  };
  for (const c of cases) {
    try {
      await c.fn(ctx);
      results.push({ name: c.name, status: "passed" });
    } catch (error) {
      if (error instanceof Skipped) results.push({ name: c.name, status: "skipped" });
      else
        results.push({
          name: c.name,
          status: "failed",
          error: error instanceof Error ? `${error.message}\n${error.stack}` : String(error),
        });
    }
  }
  return results;
}
