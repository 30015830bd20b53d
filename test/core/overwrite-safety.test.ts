import { readdir, rm, truncate, utimes } from "node:fs/promises";
import { join } from "node:path";
import {
  CheckpointError,
  CheckpointException,
  createLocalProcessGroups,
  DefaultLoadPlanner,
  FileSystemReader,
  FileSystemWriter,
  LOAD_SUPERSEDED_RETRIES,
  LocalFileSystem,
  load,
  type Metadata,
  save,
} from "@dcpjs/core";
import {
  type CreateStreamOptions,
  type FileReadStream,
  type FileWriteStream,
  type LoadPlan,
  type LoadPlanner,
  SAVE_LEASE_EXPIRY_MS,
  type WriteResult,
} from "@dcpjs/core/extend";
import { collectGarbage } from "@dcpjs/core/ops";
import { isSaveLeaseFile, saveLeaseFile, saveTagOf } from "@dcpjs/core/testing";
import { describe, expect, it } from "vitest";
import { seededState, seededTarget, whichSeed } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

/** The root failure's code of a collective error, or the error's own. */
function codeOf(error: unknown): string | undefined {
  if (error instanceof CheckpointException) return error.failures[0]?.code;
  return error instanceof CheckpointError ? error.code : undefined;
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => expect.unreachable("expected a rejection"),
    (e: unknown) => e,
  );
}

/** A writer whose commit first runs `before` with the files of this save (relative paths). */
function writerWith(path: string, before: (files: string[]) => Promise<void>): FileSystemWriter {
  const writer = new FileSystemWriter({ path });
  const finish = writer.finish.bind(writer);
  writer.finish = async (metadata: Metadata, results: WriteResult[][], signal?: AbortSignal) => {
    await before([...new Set(results.flat().map((r) => r.storageData.relativePath))]);
    return finish(metadata, results, signal);
  };
  return writer;
}

async function loadedSeed(path: string, seeds: readonly number[]): Promise<number | undefined> {
  const sd = seededTarget();
  await load(sd, { checkpointId: path });
  return whichSeed(sd, seeds);
}

describe("a save proves its own files before it commits", () => {
  for (const [what, damage] of [
    ["removed", (file: string) => rm(file)],
    ["truncated", (file: string) => truncate(file, 1000)],
  ] as const) {
    it(`a data file ${what} under the save fails it with SAVE_FILES_LOST; the checkpoint it would replace stays byte-exact and nothing of the save is left`, async () => {
      const dir = join(await tempDir(), "ckpt");
      await save(seededState(1), { checkpointId: dir });
      const before = (await readdir(dir)).sort();
      const writer = writerWith(dir, async (files) => {
        await damage(join(dir, files[0]!));
      });
      const error = await rejection(save(seededState(2), { storageWriter: writer }));
      expect(codeOf(error)).toBe("SAVE_FILES_LOST");
      expect(String((error as Error).message)).toMatch(/__0_0\.[0-9a-f]{12}\.distcp/);
      expect(await loadedSeed(dir, [1])).toBe(1);
      expect((await readdir(dir)).sort()).toEqual(before);
    });
  }
});

describe("save leases", () => {
  it("each rank's lease is in place before its first data file and gone after the commit", async () => {
    const dir = join(await tempDir(), "ckpt");
    const seen: string[][] = [];
    class Watching extends LocalFileSystem {
      override async createStream(
        path: string,
        mode: "wb",
        options?: CreateStreamOptions,
      ): Promise<FileWriteStream>;
      override async createStream(
        path: string,
        mode: "rb",
        options?: CreateStreamOptions,
      ): Promise<FileReadStream>;
      override async createStream(
        path: string,
        mode: "rb" | "wb",
        options?: CreateStreamOptions,
      ): Promise<FileWriteStream | FileReadStream> {
        if (mode === "wb" && path.endsWith(".distcp")) seen.push(await readdir(dir));
        return mode === "wb"
          ? super.createStream(path, "wb", options)
          : super.createStream(path, "rb", options);
      }
    }
    const groups = createLocalProcessGroups(2);
    const writers = groups.map(() => new FileSystemWriter({ path: dir, fs: new Watching() }));
    await Promise.all(
      groups.map((pg, r) => save(seededState(1 + r), { storageWriter: writers[r]!, processGroup: pg })),
    );
    expect(seen).toHaveLength(2);
    for (const [r, names] of seen.entries())
      expect(names, `rank ${r}`).toContain(saveLeaseFile(writers[r]!.saveTag));
    expect((await readdir(dir)).filter(isSaveLeaseFile)).toEqual([]);
  });

  it("is renewed while the rank writes, and removed with the files of a failed save", async () => {
    const dir = join(await tempDir(), "ckpt");
    let leaseWrites = 0;
    class Slow extends LocalFileSystem {
      override async createStream(
        path: string,
        mode: "wb",
        options?: CreateStreamOptions,
      ): Promise<FileWriteStream>;
      override async createStream(
        path: string,
        mode: "rb",
        options?: CreateStreamOptions,
      ): Promise<FileReadStream>;
      override async createStream(
        path: string,
        mode: "rb" | "wb",
        options?: CreateStreamOptions,
      ): Promise<FileWriteStream | FileReadStream> {
        if (mode === "rb") return super.createStream(path, "rb", options);
        if (isSaveLeaseFile(path.split("/").at(-1)!)) leaseWrites++;
        const stream = await super.createStream(path, "wb", options);
        if (!path.endsWith(".distcp")) return stream;
        // A data file that takes a while, then fails: the save fails after its lease was renewed.
        return {
          tell: () => stream.tell(),
          write: async (chunk) => {
            await new Promise((r) => setTimeout(r, 300));
            await stream.write(chunk);
            throw new CheckpointError("IO_ERROR", "Expected the disk to take the bytes, it refused");
          },
          sync: () => stream.sync(),
          close: () => stream.close(),
          abort: (reason) => stream.abort(reason),
        };
      }
    }
    const writer = new FileSystemWriter({ path: dir, fs: new Slow(), leaseRenewMs: 20 });
    expect(codeOf(await rejection(save(seededState(1), { storageWriter: writer })))).toBe("IO_ERROR");
    expect(leaseWrites).toBeGreaterThan(1);
    expect((await readdir(dir)).filter((n) => isSaveLeaseFile(n) || n.endsWith(".distcp"))).toEqual([]);
  });

  it("gc keeps every file of a save whose lease is live, whatever the grace, and collects them with the lease once it expired", async () => {
    const dir = join(await tempDir(), "ckpt");
    await save(seededState(1), { checkpointId: dir });
    // A save in flight: its lease, a finished data file and its metadata tmp (before its commit).
    const tag = "0123456789ab";
    const files = [saveLeaseFile(tag), `__0_0.${tag}.distcp`, `.metadata.${tag}.tmp`];
    const fs = new LocalFileSystem();
    for (const f of files) {
      const w = await fs.createStream(join(dir, f), "wb");
      await w.write(new Uint8Array(10));
      await w.close();
    }
    expect((await collectGarbage(dir, { graceMs: 0 })).removed).toEqual([]);
    expect(await readdir(dir)).toEqual(expect.arrayContaining(files));
    // The save died: its lease was not renewed for longer than the expiry.
    const old = (Date.now() - SAVE_LEASE_EXPIRY_MS - 60_000) / 1000;
    for (const f of files) await utimes(join(dir, f), old, old);
    expect((await collectGarbage(dir, { graceMs: 0 })).removed.sort()).toEqual([...files].sort());
    expect(await loadedSeed(dir, [1])).toBe(1);
    expect(saveTagOf(`ab/__3_1.${tag}.distcp`)).toBe(tag);
  });

  it("gc --keep-last refuses 0: the newest committed checkpoint is never removed", async () => {
    const run = await tempDir();
    await save(seededState(1), { checkpointId: join(run, "a") });
    await expect(collectGarbage(run, { keepLast: 0, graceMs: 0 })).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
    });
    expect(await loadedSeed(join(run, "a"), [1])).toBe(1);
  });
});

describe("loads racing an overwrite", () => {
  it("a data file removed by a newer commit is CHECKPOINT_SUPERSEDED, and load starts again on the newer checkpoint", async () => {
    const dir = join(await tempDir(), "ckpt");
    await save(seededState(1), { checkpointId: dir });
    const error = await rejection(
      (async () => {
        const sd = seededTarget();
        // What load does, by hand: plan from the old metadata, read after a newer commit.
        const p = new DefaultLoadPlanner();
        const r = new FileSystemReader({ path: dir });
        const md = await r.readMetadata();
        p.setUpPlanner(sd, md, true);
        r.setUpStorageReader(md, { isCoordinator: true, rank: 0, worldSize: 1 });
        const plan: LoadPlan = r.prepareGlobalPlan([r.prepareLocalPlan(p.createLocalPlan())])[0]!;
        await save(seededState(3), { checkpointId: dir });
        await r.readData(plan, p);
      })(),
    );
    expect(codeOf(error)).toBe("CHECKPOINT_SUPERSEDED");
    expect(String((error as Error).message)).toMatch(/newer save committed/);
    // load itself starts again and returns the newer checkpoint whole.
    let overwrites = 0;
    class Racing extends FileSystemReader {
      override async readData(plan: LoadPlan, p: LoadPlanner, signal?: AbortSignal): Promise<void> {
        if (overwrites++ < 2) await save(seededState(10 + overwrites), { checkpointId: dir });
        return super.readData(plan, p, signal);
      }
    }
    const sd = seededTarget();
    await load(sd, { storageReader: new Racing({ path: dir }) });
    expect(whichSeed(sd, [12])).toBe(12);
  });

  it("ranks that read .metadata of two saves agree to start again (never a mix of two checkpoints)", async () => {
    const dir = join(await tempDir(), "ckpt");
    await save(seededState(1), { checkpointId: dir });
    // Overwrites that leave the files they replace: only the plan check can notice the two reads.
    class Keeping extends LocalFileSystem {
      override async rmFile(): Promise<void> {}
    }
    let first = true;
    class Late extends FileSystemReader {
      override async readMetadata(signal?: AbortSignal): Promise<Metadata> {
        if (first) {
          first = false;
          await save(seededState(2), {
            storageWriter: new FileSystemWriter({ path: dir, fs: new Keeping() }),
          });
        }
        return super.readMetadata(signal);
      }
    }
    const groups = createLocalProcessGroups(2);
    const targets = groups.map(() => seededTarget());
    let rank0Done: () => void;
    const rank0Read = new Promise<void>((r) => {
      rank0Done = r;
    });
    class Early extends FileSystemReader {
      override async readMetadata(signal?: AbortSignal): Promise<Metadata> {
        const md = await super.readMetadata(signal);
        rank0Done();
        return md;
      }
    }
    class AfterRank0 extends Late {
      override async readMetadata(signal?: AbortSignal): Promise<Metadata> {
        await rank0Read;
        return super.readMetadata(signal);
      }
    }
    const readers = [new Early({ path: dir }), new AfterRank0({ path: dir })];
    await Promise.all(
      groups.map((pg, r) => load(targets[r]!, { storageReader: readers[r]!, processGroup: pg })),
    );
    expect(targets.map((sd) => whichSeed(sd, [1, 2]))).toEqual([2, 2]);
  });

  it(`a load superseded more than ${LOAD_SUPERSEDED_RETRIES} times in a row fails with CHECKPOINT_SUPERSEDED`, async () => {
    const dir = join(await tempDir(), "ckpt");
    await save(seededState(1), { checkpointId: dir });
    let reads = 0;
    class Outrun extends FileSystemReader {
      override async readData(): Promise<void> {
        reads++;
        throw new CheckpointError("CHECKPOINT_SUPERSEDED", "Expected the file, a newer save removed it");
      }
    }
    const error = await rejection(load(seededTarget(), { storageReader: new Outrun({ path: dir }) }));
    expect(codeOf(error)).toBe("CHECKPOINT_SUPERSEDED");
    expect(reads).toBe(LOAD_SUPERSEDED_RETRIES + 1);
  });
});
