import { describe, expect, it } from "vitest";
import { exited, spawnTs, waitForLine } from "../support/child.js";
import { tempDir } from "../support/tmp.js";

describe("a fresh process pays only for what it uses", () => {
  it("imports the read cache's libraries on a ReadCache's first use, not with @dcpjs/core", async () => {
    const child = spawnTs("./fresh-import-child.ts", [await tempDir()]);
    const line = await waitForLine(child, /^cache libraries: /);
    expect(line).toBe("cache libraries: at import 0 after a load 0 ok true");
    expect(await exited(child)).toBe("0");
  });
});
