import { load, registerStorageBackend, save, unregisterStorageBackend } from "@dcpjs/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryFileSystem, memoryBackend } from "../support/memory-file-system.js";
import { seededState, seededTarget, whichSeed } from "../support/tensors.js";
import { describeFileSystemConformance } from "./filesystem-conformance.js";

const fs = new MemoryFileSystem();
let folders = 0;

describeFileSystemConformance(
  "an in-memory backend (test/support/memory-file-system.ts)",
  () => ({
    fs,
    root: async () => `mem://conformance/${folders++}`,
  }),
  { rmMissingThrows: false },
);

describe("the storage registry", () => {
  beforeAll(() => registerStorageBackend(memoryBackend(fs)));
  afterAll(() => unregisterStorageBackend("mem"));

  it("routes a registered scheme to its backend in save and load", async () => {
    await save(seededState(3), { checkpointId: "mem://registry/step-1" });
    expect([...fs.files.keys()].some((k) => k === "mem://registry/step-1/.metadata")).toBe(true);
    const sd = seededTarget();
    await load(sd, { checkpointId: "mem://registry/step-1" });
    expect(whichSeed(sd, [3])).toBe(3);
  });

  it("refuses a scheme nobody registered, naming the package that provides a known one", async () => {
    await expect(save(seededState(1), { checkpointId: "gs://bucket/x" })).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
      message: expect.stringMatching(/gs:\/\/ checkpoint ids .* found none; registered: mem, local/),
    });
    // This file does not import @dcpjs/s3, so s3:// is not registered here.
    await expect(load(seededTarget(), { checkpointId: "s3://bucket/x" })).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
      message: expect.stringMatching(/install @dcpjs\/s3 and import it once/),
    });
  });
});
