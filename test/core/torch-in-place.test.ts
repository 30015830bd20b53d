import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  emptyTensor,
  FileSystemReader,
  FileSystemWriter,
  LocalFileSystem,
  load,
  save,
  type Tensor,
  tensorBytes,
} from "@dcpjs/core";
import type { CreateStreamOptions, FileReadStream } from "@dcpjs/core/extend";
import { beforeAll, describe, expect, it } from "vitest";
import { failureOf } from "../support/failure.js";
import { runPeer, torchPython } from "../support/python-peer.js";
import { hexOf, randomTensor } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

/** A LocalFileSystem that records every read of a data file: its length and the buffer it filled. */
class RecordingFileSystem extends LocalFileSystem {
  readonly reads: { length: number; buffer: ArrayBufferLike }[] = [];

  override async createStream(
    path: string,
    mode: "rb",
    options?: CreateStreamOptions,
  ): Promise<FileReadStream>;
  override async createStream(path: string, mode: "wb", options?: CreateStreamOptions): Promise<never>;
  override async createStream(path: string, mode: "rb" | "wb", options?: CreateStreamOptions) {
    const stream = (await super.createStream(path, mode as "rb", options)) as FileReadStream;
    if (!path.endsWith(".distcp")) return stream;
    const reads = this.reads;
    return {
      ...stream,
      size: () => stream.size(),
      close: () => stream.close(),
      read: async (offset: number, length: number, signal?: AbortSignal) => {
        const bytes = await stream.read(offset, length, signal);
        reads.push({ length: bytes.byteLength, buffer: bytes.buffer });
        return bytes;
      },
      ...(stream.readInto
        ? {
            readInto: async (offset: number, target: Uint8Array, signal?: AbortSignal) => {
              await stream.readInto!(offset, target, signal);
              reads.push({ length: target.byteLength, buffer: target.buffer });
            },
          }
        : {}),
      ...(stream.readvInto
        ? {
            readvInto: async (offset: number, targets: Uint8Array[], signal?: AbortSignal) => {
              await stream.readvInto!(offset, targets, signal);
              for (const t of targets) reads.push({ length: t.byteLength, buffer: t.buffer });
            },
          }
        : {}),
    } as FileReadStream;
  }
}

/** Bytes read into `t`'s memory, and the longest read into any other buffer. */
function readsOf(fs: RecordingFileSystem, t: Tensor, others: readonly Tensor[]) {
  const mine = tensorBytes(t).buffer;
  const dests = new Set(others.map((o) => tensorBytes(o).buffer));
  return {
    intoDest: fs.reads.filter((r) => r.buffer === mine).reduce((n, r) => n + r.length, 0),
    longestElsewhere: Math.max(0, ...fs.reads.filter((r) => !dests.has(r.buffer)).map((r) => r.length)),
  };
}

describe("torch tensor items are read straight into their tensors", () => {
  it("a dcpjs-written torch item: exactly its tensor's bytes land in the destination, no staging buffer", async () => {
    const dir = join(await tempDir(), "ckpt");
    const big = randomTensor("float32", [512, 512], 1); // 1 MiB
    await save({ big }, { storageWriter: new FileSystemWriter({ path: dir, format: "torch" }) });
    const fs = new RecordingFileSystem();
    const into = emptyTensor("float32", [512, 512]);
    await load({ big: into }, { storageReader: new FileSystemReader({ path: dir, fs }) });
    expect(hexOf(into)).toBe(hexOf(big));
    const r = readsOf(fs, into, [into]);
    expect(r.intoDest).toBe(1024 * 1024);
    // only the frame (the zip's headers, pickle and directory) is read anywhere else
    expect(r.longestElsewhere).toBeLessThan(4096);
  });

  it("a flipped byte in the tensor data is CHECKSUM_MISMATCH naming the fqn and the zip member", async () => {
    const dir = join(await tempDir(), "ckpt");
    const big = randomTensor("float32", [512, 512], 2);
    await save({ big }, { storageWriter: new FileSystemWriter({ path: dir, format: "torch" }) });
    const file = (await import("node:fs/promises")).readdir(dir);
    const data = join(dir, (await file).find((f) => f.endsWith(".distcp"))!);
    const bytes = await readFile(data);
    const at = bytes.indexOf(Buffer.from(tensorBytes(big).subarray(0, 64)));
    expect(at).toBeGreaterThan(0);
    bytes[at + 700_000]! ^= 0x10;
    await writeFile(data, bytes);
    const f = await failureOf(load({ big: emptyTensor("float32", [512, 512]) }, { checkpointId: dir }));
    expect(f.code).toBe("CHECKSUM_MISMATCH");
    expect(f.message).toMatch(
      /^CRC-32 mismatch for "big" in __0_0\.[0-9a-f]+\.distcp .*\(zip member archive\/data\/0\)/,
    );
  });

  describe("torch 2.13's own dcp.save", () => {
    beforeAll(async () => {
      await torchPython();
    }, 600_000);

    it("contiguous items in place, a transposed view staged and gathered; every tensor bit-exact", async () => {
      const root = await tempDir();
      const dir = join(root, "ckpt");
      await runPeer("torch_large_peer.py", ["save", dir]);
      const expected = JSON.parse(await readFile(join(root, "expected.json"), "utf8")) as Record<
        string,
        { dtype: "float32" | "bfloat16"; shape: number[]; hex: string }
      >;
      const target = Object.fromEntries(
        Object.entries(expected).map(([k, e]) => [k, emptyTensor(e.dtype, e.shape)]),
      ) as Record<string, Tensor>;
      const fs = new RecordingFileSystem();
      await load(target, { storageReader: new FileSystemReader({ path: dir, fs }) });
      for (const [k, e] of Object.entries(expected)) expect(hexOf(target[k]!), k).toBe(e.hex);
      const all = Object.values(target);
      for (const k of ["big", "half", "s"]) {
        const t = target[k]!;
        expect(readsOf(fs, t, all).intoDest, k).toBe(tensorBytes(t).byteLength);
      }
      // the transposed view's item is strided: read whole into a staging buffer and gathered
      expect(readsOf(fs, target.t!, all).intoDest).toBe(0);
      expect(readsOf(fs, target.t!, all).longestElsewhere).toBeGreaterThanOrEqual(1024 * 1024);
    });

    it("a flipped byte in a large tensor's data is caught: CHECKSUM_MISMATCH naming the fqn", async () => {
      const root = await tempDir();
      const dir = join(root, "ckpt");
      await runPeer("torch_large_peer.py", ["save", dir]);
      const expected = JSON.parse(await readFile(join(root, "expected.json"), "utf8")) as Record<
        string,
        { hex: string }
      >;
      const file = join(dir, "__0_0.distcp");
      const bytes = await readFile(file);
      const at = bytes.indexOf(Buffer.from(expected.half!.hex.slice(0, 256), "hex"));
      expect(at).toBeGreaterThan(0);
      bytes[at + 300_000]! ^= 0x01;
      await writeFile(file, bytes);
      const f = await failureOf(load({ half: emptyTensor("bfloat16", [640, 512]) }, { checkpointId: dir }));
      expect(f.code).toBe("CHECKSUM_MISMATCH");
      expect(f.message).toMatch(/^CRC-32 mismatch for "half" in __0_0\.distcp .*\(zip member .*data\/\d+\)/);
    });
  });
});
