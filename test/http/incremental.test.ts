import { join } from "node:path";
import { emptyTensor, load, save } from "@dcpjs/core";
import "@dcpjs/http";
import { describe, expect, it } from "vitest";
import { serverPerTest } from "../support/http-file-server.js";
import { hexOf, randomTensor } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

const serve = serverPerTest();

describe("incremental checkpoints over http://", () => {
  it("loads through the references: the base's file is fetched from the sibling URL", async () => {
    const root = await tempDir();
    const frozen = randomTensor("float32", [512, 512], 1); // 1 MiB, unchanged
    await save({ frozen, head: randomTensor("float32", [16], 2) }, { checkpointId: join(root, "step-100") });
    const head = randomTensor("float32", [16], 3);
    await save({ frozen, head }, { checkpointId: join(root, "step-110"), base: join(root, "step-100") });
    const server = await serve({ root });
    const got = await load(
      { frozen: emptyTensor("float32", [512, 512]), head: emptyTensor("float32", [16]) },
      { checkpointId: `${server.origin}/step-110` },
    );
    expect(hexOf(got.frozen as typeof frozen)).toBe(hexOf(frozen));
    expect(hexOf(got.head as typeof head)).toBe(hexOf(head));
    expect(server.requests.some((r) => r.path.startsWith("/step-100/") && r.path.endsWith(".distcp"))).toBe(
      true,
    );
  });
});
