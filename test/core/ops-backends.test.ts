import { join } from "node:path";
import { FileSystemReader, FileSystemWriter, load, save } from "@dcpjs/core";
import { registerStorageBackend, unregisterStorageBackend } from "@dcpjs/core/extend";
import {
  cleanupUploads,
  collectGarbage,
  copyCheckpoint,
  inspectCheckpoint,
  listCheckpoints,
  removeCheckpoint,
  verifyCheckpoint,
} from "@dcpjs/core/ops";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryFileSystem, memoryBackend } from "../support/memory-file-system.js";
import { seededState, seededTarget, whichSeed } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

const fs = new MemoryFileSystem();
/** The files of the read-only `ro://` backend (an HTTP server's, say), written here by hand. */
const served = new MemoryFileSystem();

describe("the operations work on any registered backend through its file system", () => {
  beforeAll(() => {
    registerStorageBackend(memoryBackend(fs));
    // A read-only backend (as an HTTP server's files): a reader and a file system, no writer.
    registerStorageBackend({
      name: "ro",
      readOnly: true,
      validateCheckpointId: (id) => id.startsWith("ro://"),
      fileSystem: (path) => ({ fs: served, path }),
      createReader: (path, options) => new FileSystemReader({ ...options, path, fs: served }),
    });
  });
  afterAll(() => {
    unregisterStorageBackend("mem");
    unregisterStorageBackend("ro");
  });

  it("copies a folder to mem:// and back, verifies, inspects, lists, collects and removes there", async () => {
    const local = join(await tempDir(), "ckpt");
    await save(seededState(5), { checkpointId: local });
    const progress: [number, number][] = [];
    const copied = await copyCheckpoint(local, "mem://ops/run/step-1", {
      onProgress: (done, total) => progress.push([done, total]),
    });
    expect(copied.copied.length).toBeGreaterThan(0);
    expect(progress.at(-1)![0]).toBe(progress.at(-1)![1]);
    expect(await verifyCheckpoint("mem://ops/run/step-1")).toMatchObject({ damaged: [], unchecksummed: 0 });
    expect((await inspectCheckpoint("mem://ops/run/step-1")).totals.entries).toBe(17);
    expect((await listCheckpoints("mem://ops/run")).map((c) => c.id)).toEqual(["mem://ops/run/step-1"]);
    expect((await collectGarbage("mem://ops/run/step-1", { graceMs: 0 })).removed).toEqual([]);
    const back = join(await tempDir(), "back");
    await copyCheckpoint("mem://ops/run/step-1", back);
    const sd = seededTarget();
    await load(sd, { checkpointId: back });
    expect(whichSeed(sd, [5])).toBe(5);
    expect((await removeCheckpoint("mem://ops/run/step-1")).removed[0]).toBe(".metadata");
    expect(await listCheckpoints("mem://ops/run")).toEqual([]);
  });

  it("a read-only backend is read and verified, but nothing writes or removes there", async () => {
    await save(seededState(2), {
      storageWriter: new FileSystemWriter({ path: "ro://ops/ro/step-1", fs: served }),
    });
    expect(await verifyCheckpoint("ro://ops/ro/step-1")).toMatchObject({ damaged: [] });
    const writable = {
      code: "INVALID_ARGUMENT",
      message: expect.stringMatching(/^Expected a writable backend/),
    };
    await expect(save(seededState(1), { checkpointId: "ro://ops/ro/step-2" })).rejects.toMatchObject(
      writable,
    );
    await expect(removeCheckpoint("ro://ops/ro/step-1")).rejects.toMatchObject(writable);
    await expect(collectGarbage("ro://ops/ro/step-1")).rejects.toMatchObject(writable);
    await expect(copyCheckpoint("ro://ops/ro/step-1", "ro://ops/ro/copy")).rejects.toMatchObject(writable);
  });

  it("cleanupUploads refuses a backend without uploads to clean up", async () => {
    await expect(cleanupUploads(await tempDir())).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
  });

  it("an aborted operation throws ABORTED", async () => {
    const local = join(await tempDir(), "ckpt");
    await save(seededState(3), { checkpointId: local });
    const signal = AbortSignal.abort();
    await expect(verifyCheckpoint(local, { signal })).rejects.toMatchObject({ code: "ABORTED" });
    await expect(copyCheckpoint(local, "mem://ops/aborted", { signal })).rejects.toMatchObject({
      code: "ABORTED",
    });
    expect(await fs.exists("mem://ops/aborted/.metadata")).toBe(false);
  });
});
