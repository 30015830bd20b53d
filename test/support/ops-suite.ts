import { emptyTensor, load, type StateDict, save } from "@dcpjs/core";
import type { FileSystemBase, StorageWriter } from "@dcpjs/core/extend";
import {
  COPY_PIECE_BYTES,
  collectGarbage,
  copyCheckpoint,
  listCheckpoints,
  removeCheckpoint,
  verifyCheckpoint,
} from "@dcpjs/core/ops";
import { describe, expect, it } from "vitest";
import { exited, spawnTs, waitForLine } from "./child.js";
import { randomTensor, sameTensor, seededState, seededTarget, whichSeed } from "./tensors.js";

/** Where the operations are tried: fresh folders (or S3 prefixes), their backend, and a raw writer of files. */
export interface OpsTarget {
  fresh(): Promise<string>;
  fs(): FileSystemBase;
  /** A writer for `path` (the backend's own). */
  writer(path: string): StorageWriter;
}

const names = async (fs: FileSystemBase, path: string) => (await fs.list!(path)).map((e) => e.name).sort();

async function put(fs: FileSystemBase, path: string, bytes: Uint8Array = new Uint8Array(100)): Promise<void> {
  const w = await fs.createStream(path, "wb");
  await w.write(bytes);
  await w.close();
}

/** `dcp ls`, `rm`, `gc` and `cp` on one backend. */
export function describeCheckpointOps(name: string, target: OpsTarget): void {
  describe(`checkpoint operations on ${name}`, () => {
    it("ls lists committed and incomplete checkpoints under a run, newest first", async () => {
      const run = await target.fresh();
      const fs = target.fs();
      for (const [step, seed] of [
        ["step-1", 1],
        ["step-2", 2],
      ] as const) {
        await save(seededState(seed), { storageWriter: target.writer(fs.concatPath(run, step)) });
        await new Promise((r) => setTimeout(r, 1100)); // S3 times have 1 s resolution
      }
      await put(fs, fs.concatPath(run, "step-3/__0_0.0123456789ab.distcp")); // a killed save's file
      const found = await listCheckpoints(run, { includeIncomplete: true }); // as dcp ls lists a run
      expect(found.map((c) => [c.id.split("/").at(-1), c.state])).toEqual([
        ["step-3", "incomplete"],
        ["step-2", "committed"],
        ["step-1", "committed"],
      ]);
      expect(found[1]).toMatchObject({ format: "dcpjs", ranks: [0], entries: 17 });
      expect(found[1]!.bytes).toBeGreaterThan(16 * 256 * 1024);
    }, 60_000);

    it("rm removes a checkpoint (.metadata first) and refuses a folder that is not one", async () => {
      const path = await target.fresh();
      const fs = target.fs();
      await save(seededState(1), { storageWriter: target.writer(path) });
      await put(fs, fs.concatPath(path, "notes.txt"));
      const r = await removeCheckpoint(path);
      expect(r.removed[0]).toBe(".metadata");
      expect(await names(fs, path)).toEqual(["notes.txt"]);
      await expect(removeCheckpoint(path)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    });

    it("gc removes what a killed or superseded save left (after the grace period), never what the checkpoint needs", async () => {
      const path = await target.fresh();
      const fs = target.fs();
      await save(seededState(1), { storageWriter: target.writer(path) });
      const keep = await names(fs, path);
      await put(fs, fs.concatPath(path, "__0_0.0123456789ab.distcp"));
      await put(fs, fs.concatPath(path, ".metadata.0123456789ab.tmp"));
      const dry = await collectGarbage(path, { dryRun: true, graceMs: 0 });
      expect(dry.removed.sort()).toEqual([".metadata.0123456789ab.tmp", "__0_0.0123456789ab.distcp"]);
      expect((await names(fs, path)).length).toBe(keep.length + 2);
      expect((await collectGarbage(path, { graceMs: 3_600_000 })).removed).toEqual([]); // too young
      const r = await collectGarbage(path, { graceMs: 0 });
      expect(r.bytes).toBe(200);
      expect(await names(fs, path)).toEqual(keep);
      const sd = seededTarget();
      await load(sd, { checkpointId: path });
      expect(whichSeed(sd, [1])).toBe(1);
    });

    it("gc --keep-last keeps the newest committed checkpoints of a run and removes the older ones", async () => {
      const run = await target.fresh();
      const fs = target.fs();
      for (const step of ["a", "b", "c"]) {
        await save(seededState(1), { storageWriter: target.writer(fs.concatPath(run, step)) });
        await new Promise((r) => setTimeout(r, 1100));
      }
      await collectGarbage(run, { keepLast: 1, graceMs: 0 });
      const left = await listCheckpoints(run, { includeIncomplete: true }); // as dcp ls lists a run
      expect(left.map((c) => c.id.split("/").at(-1))).toEqual(["c"]);
    }, 60_000);

    it("cp copies a checkpoint verified and committed last; a second cp copies nothing; a damaged source is refused", async () => {
      const src = await target.fresh();
      const fs = target.fs();
      await save(seededState(4), { storageWriter: target.writer(src) });
      const dst = await target.fresh();
      const first = await copyCheckpoint(src, dst);
      expect(first.copied.length).toBeGreaterThan(0);
      const sd = seededTarget();
      await load(sd, { checkpointId: dst });
      expect(whichSeed(sd, [4])).toBe(4);
      const again = await copyCheckpoint(src, dst);
      expect(again.copied).toEqual([]);
      expect(again.bytes).toBe(0);
      // damage one byte of the source's data file: cp fails naming the fqn and commits nothing
      const file = (await names(fs, src)).find((n) => n.endsWith(".distcp"))!;
      const r = await fs.createStream(fs.concatPath(src, file), "rb", { access: "random" });
      const bytes = await r.read(0, await r.size());
      await r.close();
      bytes[1000]! ^= 0x01;
      await put(fs, fs.concatPath(src, file), bytes);
      const fresh = await target.fresh();
      await expect(copyCheckpoint(src, fresh)).rejects.toMatchObject({ code: "CHECKSUM_MISMATCH" });
      expect(await names(fs, fresh)).not.toContain(".metadata");
    });

    it("incremental checkpoints: rm refuses a base, gc --keep-last keeps it, cp makes a self-contained copy, verify follows references", async () => {
      const run = await target.fresh();
      const fs = target.fs();
      const [a, b, c] = ["a", "b", "c"].map((n) => fs.concatPath(run, n)) as [string, string, string];
      const frozen = seededState(1);
      const sdOf = (seed: number): StateDict => ({ ...seededState(seed), w0: frozen.w0!, w1: frozen.w1! });
      await save(frozen, { storageWriter: target.writer(a) });
      await new Promise((r) => setTimeout(r, 1100)); // S3 times have 1 s resolution
      await save(sdOf(2), { storageWriter: target.writer(b), base: a });
      await new Promise((r) => setTimeout(r, 1100));
      await save(sdOf(3), { storageWriter: target.writer(c), base: b }); // w0, w1: flat references to a
      await expect(removeCheckpoint(a)).rejects.toMatchObject({ code: "CHECKPOINT_REFERENCED" });
      expect(await names(fs, a)).not.toContain(".removing");
      const gc = await collectGarbage(run, { keepLast: 1, graceMs: 0 });
      expect(gc.removed).toEqual([b]);
      expect((await listCheckpoints(run)).map((x) => x.id.split("/").at(-1)).sort()).toEqual(["a", "c"]);
      expect((await verifyCheckpoint(c)).damaged).toEqual([]);
      const copy = await target.fresh();
      expect((await copyCheckpoint(c, copy)).bases).toEqual(["a"]);
      expect((await removeCheckpoint(a, { force: true })).broken).toEqual([c]);
      const sd = seededTarget();
      await load(sd, { checkpointId: copy });
      const want = sdOf(3);
      expect(
        Object.keys(want).every((k) =>
          k === "seed" ? sd.seed === 3 : sameTensor(sd[k] as never, want[k] as never),
        ),
      ).toBe(true);
    }, 60_000);

    it("cp reads an item larger than a piece in ranged pieces, in order, its CRC checked across them", async () => {
      const big = randomTensor("float32", [5 * 1024 * 1024 + 3], 7); // 20 MiB + 12 bytes: 3 pieces
      expect(big.data.byteLength).toBeGreaterThan(2 * COPY_PIECE_BYTES);
      const small = randomTensor("int8", [100], 8);
      const src = await target.fresh();
      await save({ big, small }, { storageWriter: target.writer(src) });
      for (const concurrency of [1, 3]) {
        const dst = await target.fresh();
        await copyCheckpoint(src, dst, { concurrency });
        const sd = { big: emptyTensor("float32", big.shape), small: emptyTensor("int8", [100]) };
        await load(sd, { checkpointId: dst });
        expect(sameTensor(sd.big, big) && sameTensor(sd.small, small)).toBe(true);
      }
      // One flipped byte in the last piece of the big item: refused, naming it; nothing committed.
      const fs = target.fs();
      const file = (await names(fs, src)).find((n) => n.endsWith(".distcp"))!;
      const r = await fs.createStream(fs.concatPath(src, file), "rb", { access: "random" });
      const bytes = await r.read(0, await r.size());
      await r.close();
      bytes[2 * COPY_PIECE_BYTES + 5]! ^= 0x10;
      await put(fs, fs.concatPath(src, file), bytes);
      const fresh = await target.fresh();
      await expect(copyCheckpoint(src, fresh)).rejects.toThrow(/"big"/);
      expect(await names(fs, fresh)).not.toContain(".metadata");
    });

    it("a cp killed part-way (SIGKILL after its first item arrived) leaves nothing loadable", async () => {
      const src = await target.fresh();
      await save(seededState(6), { storageWriter: target.writer(src) });
      const fs = target.fs();
      let beforeCommit = 0;
      for (let trial = 0; trial < 4; trial++) {
        const dst = await target.fresh();
        const child = spawnTs("copy-worker.ts", [src, dst]);
        await waitForLine(child, /copying/);
        await new Promise((r) => setTimeout(r, Math.random() * 20 * trial));
        child.kill("SIGKILL");
        await exited(child);
        const committed = (await fs.exists(fs.concatPath(dst, ".metadata"))) ? "committed" : "not committed";
        if (committed === "not committed") beforeCommit++;
        const sd = seededTarget();
        const outcome = await load(sd, { checkpointId: dst }).then(
          () => (whichSeed(sd, [6]) === 6 ? "complete" : "wrong"),
          (e: { failures?: { code: string }[]; code?: string }) => e.failures?.[0]?.code ?? e.code,
        );
        expect(outcome).toBe(committed === "committed" ? "complete" : "INCOMPLETE_CHECKPOINT");
      }
      expect(beforeCommit).toBeGreaterThan(0); // the kills landed mid-copy, not only after it
    }, 120_000);

    it("verify passes a sound checkpoint and names the one entry a flipped byte damaged", async () => {
      const src = await target.fresh();
      await save(seededState(9), { storageWriter: target.writer(src) });
      expect(await verifyCheckpoint(src)).toMatchObject({ checked: 17, damaged: [], unchecksummed: 0 });
      const fs = target.fs();
      const file = (await names(fs, src)).find((n) => n.endsWith(".distcp"))!;
      const r = await fs.createStream(fs.concatPath(src, file), "rb", { access: "random" });
      const bytes = await r.read(0, await r.size());
      await r.close();
      bytes[bytes.length - 100]! ^= 0x04; // inside the last tensor of the file
      await put(fs, fs.concatPath(src, file), bytes);
      const report = await verifyCheckpoint(src);
      expect(report.checked).toBe(17);
      expect(report.damaged).toHaveLength(1);
      expect(report.damaged[0]).toMatchObject({
        code: "CHECKSUM_MISMATCH",
        fqn: expect.stringMatching(/^w\d+$/),
      });
    });
  });
}
