import {
  CheckpointError,
  emptyTensor,
  FileSystemReader,
  FileSystemWriter,
  load,
  NotFoundError,
  save,
  shardTensor,
} from "@dcpjs/core";
import type { FileSystemBase } from "@dcpjs/core/extend";
import { describe, expect, it } from "vitest";
import { allRanks } from "../support/ranks.js";
import { randomTensor, sameTensor } from "../support/tensors.js";

/** A backend under test: a file system and a fresh folder (path or URI) per call. */
export interface ConformanceTarget {
  readonly fs: FileSystemBase;
  /** A fresh, empty folder. */
  root(): Promise<string>;
}

/** Where backends legitimately differ (as their upstream counterparts do). */
export interface ConformanceOptions {
  /** Removing a missing file is an error (local, as DCP's FileSystem) or not (S3, as s3torchconnector). */
  readonly rmMissingThrows: boolean;
}

const bytes = (n: number, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

/**
 * The contract every {@link FileSystemBase} must meet, and a save/load through
 * FileSystemWriter/FileSystemReader on top of it: one suite for every backend.
 */
export function describeFileSystemConformance(
  name: string,
  target: () => ConformanceTarget,
  options: ConformanceOptions,
): void {
  describe(`FileSystemBase conformance: ${name}`, () => {
    it("writes a file front to back, counting bytes with tell(), and reads any range back", async () => {
      const { fs, root } = target();
      const path = fs.concatPath(await root(), "a/b.distcp");
      const w = await fs.createStream(path, "wb");
      expect(w.tell()).toBe(0);
      await w.write(bytes(1000, 1));
      expect(w.tell()).toBe(1000);
      await w.write(bytes(24, 2));
      expect(w.tell()).toBe(1024);
      await w.sync();
      await w.close();
      const r = await fs.createStream(path, "rb");
      expect(await r.size()).toBe(1024);
      expect(await r.read(1000, 24)).toEqual(bytes(24, 2));
      expect(await r.read(10, 5)).toEqual(bytes(1000, 1).subarray(10, 15));
      expect(await r.read(0, 0)).toEqual(new Uint8Array(0));
      await r.close();
    });

    it("writev (where the backend has it) appends 2,500 chunks in order between plain writes", async (ctx) => {
      const { fs, root } = target();
      const path = fs.concatPath(await root(), "v.distcp");
      const w = await fs.createStream(path, "wb");
      if (!w.writev) {
        await w.abort();
        ctx.skip(); // the writer falls back to one write of the concatenation
      }
      // More chunks than IOV_MAX (1024), of uneven sizes (empty ones too), between two writes.
      const chunks = Array.from({ length: 2500 }, (_, i) => bytes(i % 7 === 0 ? 0 : 1 + (i % 300), i));
      const total = chunks.reduce((n, c) => n + c.byteLength, 0);
      await w.write(bytes(10, 9));
      await w.writev!(chunks);
      expect(w.tell()).toBe(10 + total);
      await w.write(bytes(5, 8));
      await w.close();
      const r = await fs.createStream(path, "rb");
      expect(await r.read(0, 10 + total + 5)).toEqual(
        new Uint8Array(Buffer.concat([bytes(10, 9), ...chunks, bytes(5, 8)])),
      );
      await r.close();
    });

    it("writes and reads an empty file", async () => {
      const { fs, root } = target();
      const path = fs.concatPath(await root(), "empty.distcp");
      const w = await fs.createStream(path, "wb");
      await w.close();
      expect(await fs.exists(path)).toBe(true);
      const r = await fs.createStream(path, "rb");
      expect(await r.size()).toBe(0);
      await r.close();
    });

    it("fails a read past the end with TRUNCATED", async () => {
      const { fs, root } = target();
      const path = fs.concatPath(await root(), "short");
      const w = await fs.createStream(path, "wb");
      await w.write(bytes(10));
      await w.close();
      const r = await fs.createStream(path, "rb");
      await expect(r.read(5, 10)).rejects.toMatchObject({ code: "TRUNCATED" });
      await r.close();
    });

    it("reports a missing file as NotFoundError and exists() false", async () => {
      const { fs, root } = target();
      const path = fs.concatPath(await root(), "missing");
      expect(await fs.exists(path)).toBe(false);
      const e = await (async () => {
        const r = await fs.createStream(path, "rb");
        try {
          await r.read(0, 1);
        } finally {
          await r.close();
        }
      })().catch((x: unknown) => x);
      expect(e).toBeInstanceOf(NotFoundError);
    });

    it("renames a file, also with special characters in its name", async () => {
      const { fs, root } = target();
      const dir = await root();
      for (const name of ["plain", "test_[+re.name]!@£$%^&*_(src)"]) {
        const from = fs.concatPath(dir, name);
        const to = fs.concatPath(dir, `${name}.renamed`);
        const w = await fs.createStream(from, "wb");
        await w.write(bytes(64, 7));
        await w.close();
        await fs.rename(from, to);
        expect(await fs.exists(from)).toBe(false);
        expect(await fs.exists(to)).toBe(true);
        const r = await fs.createStream(to, "rb");
        expect(await r.read(0, 64)).toEqual(bytes(64, 7));
        await r.close();
      }
    });

    it("an exclusive rename onto an existing file fails with ALREADY_EXISTS and changes nothing", async () => {
      const { fs, root } = target();
      const dir = await root();
      const [from, to] = [fs.concatPath(dir, "from"), fs.concatPath(dir, "to")];
      for (const [path, seed] of [
        [from, 1],
        [to, 2],
      ] as const) {
        const w = await fs.createStream(path, "wb");
        await w.write(bytes(32, seed));
        await w.close();
      }
      const error = await fs.rename(from, to, { overwrite: false }).catch((e: unknown) => e);
      expect((error as CheckpointError).code).toBe("ALREADY_EXISTS");
      const r = await fs.createStream(to, "rb");
      expect(await r.read(0, 32)).toEqual(bytes(32, 2));
      await r.close();
      expect(await fs.exists(from)).toBe(true);
    });

    it("of 4 concurrent exclusive renames to one path exactly one succeeds", async () => {
      const { fs, root } = target();
      const dir = await root();
      const sources = await Promise.all(
        [1, 2, 3, 4].map(async (seed) => {
          const path = fs.concatPath(dir, `src-${seed}`);
          const w = await fs.createStream(path, "wb");
          await w.write(bytes(32, seed));
          await w.close();
          return path;
        }),
      );
      const to = fs.concatPath(dir, "target");
      const outcomes = await Promise.allSettled(sources.map((s) => fs.rename(s, to, { overwrite: false })));
      const won = outcomes.findIndex((o) => o.status === "fulfilled");
      expect(outcomes.filter((o) => o.status === "fulfilled")).toHaveLength(1);
      for (const o of outcomes)
        if (o.status === "rejected") expect((o.reason as CheckpointError).code).toBe("ALREADY_EXISTS");
      const r = await fs.createStream(to, "rb");
      expect(await r.read(0, 32)).toEqual(bytes(32, won + 1));
      await r.close();
    });

    it("refuses a read with a negative or fractional length or offset, as a rejected promise", async () => {
      const { fs, root } = target();
      const path = fs.concatPath(await root(), "args.distcp");
      const w = await fs.createStream(path, "wb");
      await w.write(bytes(16));
      await w.close();
      const r = await fs.createStream(path, "rb");
      for (const [offset, length] of [
        [0, -1],
        [-1, 4],
        [0, 1.5],
      ] as const) {
        const error = await r.read(offset, length).catch((e: unknown) => e);
        expect((error as CheckpointError).code).toBe("INVALID_ARGUMENT");
        expect((error as CheckpointError).message).toMatch(
          /^Expected `(offset|length)` to be an integer >= 0 bytes, got/,
        );
      }
      expect(await r.read(4, 0)).toEqual(new Uint8Array(0));
      await r.close();
    });

    it("fails to rename a missing file", async () => {
      const { fs, root } = target();
      const dir = await root();
      await expect(fs.rename(fs.concatPath(dir, "nope"), fs.concatPath(dir, "x"))).rejects.toBeInstanceOf(
        NotFoundError,
      );
    });

    it(`removes a file; a missing one ${options.rmMissingThrows ? "throws NotFoundError" : "is not an error"}`, async () => {
      const { fs, root } = target();
      const path = fs.concatPath(await root(), "gone");
      const w = await fs.createStream(path, "wb");
      await w.close();
      await fs.rmFile(path);
      expect(await fs.exists(path)).toBe(false);
      if (options.rmMissingThrows) await expect(fs.rmFile(path)).rejects.toBeInstanceOf(NotFoundError);
      else await fs.rmFile(path);
    });

    it("leaves nothing at the path of an aborted write", async () => {
      const { fs, root } = target();
      const path = fs.concatPath(await root(), "aborted.distcp");
      const w = await fs.createStream(path, "wb");
      await w.write(bytes(100));
      await w.abort(new Error("test abort"));
      expect(await fs.exists(path)).toBe(false);
    });

    it("rejects modes other than rb and wb", async () => {
      const { fs, root } = target();
      const path = fs.concatPath(await root(), "x");
      await expect(fs.createStream(path, "w" as "wb")).rejects.toThrow(
        /only supports rb \(read mode\) & wb \(write mode\)/,
      );
      await expect(fs.createStream(path, "w" as "wb")).rejects.toBeInstanceOf(CheckpointError);
    });

    it("saves with 3 ranks × 2 files and loads into 2 ranks through FileSystemWriter/Reader", async () => {
      const { fs, root } = target();
      const dir = await root();
      const full = randomTensor("float32", [30, 7], 5);
      await allRanks(3, (pg) =>
        save(
          {
            w: shardTensor(full, { rank: pg.rank, worldSize: pg.size }),
            b: randomTensor("int8", [5], 3),
            step: 12,
          },
          { storageWriter: new FileSystemWriter({ path: dir, fs, threadCount: 2 }), processGroup: pg },
        ),
      );
      const loaded = await allRanks(2, async (pg) => {
        const sd = { w: emptyTensor("float32", [30, 7]), b: emptyTensor("int8", [5]), step: 0 };
        await load(sd, { storageReader: new FileSystemReader({ path: dir, fs }), processGroup: pg });
        return sd;
      });
      for (const sd of loaded) {
        expect(sameTensor(sd.w, full)).toBe(true);
        expect(sameTensor(sd.b, randomTensor("int8", [5], 3))).toBe(true);
        expect(sd.step).toBe(12);
      }
    });
  });
}
