import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** Imports `specifier` in a plain Node process (no `@dcpjs/source` condition, as an installed package is loaded) from the repository root. */
function importPlain(specifier: string): Promise<{ code: number; stderr: string }> {
  const program = `await import(${JSON.stringify(specifier)});`;
  return promisify(execFile)(process.execPath, ["--input-type=module", "-e", program], { cwd: ROOT }).then(
    ({ stderr }) => ({ code: 0, stderr }),
    (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
  );
}

describe("the published surface", () => {
  for (const pkg of ["core", "s3"]) {
    it(`exports @dcpjs/${pkg}/testing under the source-only condition, so an installed package cannot resolve it`, async () => {
      const manifest = JSON.parse(await readFile(`${ROOT}packages/${pkg}/package.json`, "utf8"));
      expect(manifest.exports["./testing"]).toEqual({ "@dcpjs/source": "./src/testing.ts" });
      const plain = await importPlain(`@dcpjs/${pkg}/testing`);
      expect(plain.code).not.toBe(0);
      expect(plain.stderr).toContain("ERR_PACKAGE_PATH_NOT_EXPORTED");
    });
  }

  it("gives a training program DCP's DefaultLoadPlanner from the root", async () => {
    const core = await import("@dcpjs/core");
    expect(typeof core.DefaultLoadPlanner).toBe("function");
  });
});
