import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { CheckpointError, emptyTensor, FileSystemReader, load, save, type Tensor } from "@dcpjs/core";
import { describe, expect, it } from "vitest";
import { tempDir } from "../support/tmp.js";

const ITEMS = 300;

/** `ITEMS` float32 tensors of 4 elements saved to one file (one run of tiny items on load). */
async function tinyCheckpoint(): Promise<string> {
  const dir = await tempDir();
  const sd: Record<string, Tensor> = {};
  for (let i = 0; i < ITEMS; i++)
    sd[`t.${i}`] = { dtype: "float32", shape: [4], data: new Float32Array(4).fill(i + 0.25) };
  await save(sd, { checkpointId: dir });
  return dir;
}

/** Fresh destinations: in shared memory (`emptyTensor`) or plain. */
const targets = (shared: boolean): Record<string, Tensor> =>
  Object.fromEntries(
    Array.from({ length: ITEMS }, (_, i) => [
      `t.${i}`,
      shared ? emptyTensor("float32", [4]) : { dtype: "float32", shape: [4], data: new Float32Array(4) },
    ]),
  );

describe("a run of tiny items, checked together on the calling thread", () => {
  for (const shared of [true, false]) {
    it(`loads bit-exact, and names the damaged item (${shared ? "shared" : "plain"} destinations)`, async () => {
      const dir = await tinyCheckpoint();
      const ok = targets(shared);
      await load(ok, { storageReader: new FileSystemReader({ path: dir, workerMinBytes: 0 }) });
      for (let i = 0; i < ITEMS; i++)
        expect(Array.from(ok[`t.${i}`]!.data as Float32Array)).toEqual([
          i + 0.25,
          i + 0.25,
          i + 0.25,
          i + 0.25,
        ]);
      const file = join(dir, (await readdir(dir)).find((f) => f.startsWith("__0_0"))!);
      const bytes = await readFile(file);
      bytes[16 * 123 + 5]! ^= 0x10; // inside item 123 (16 bytes each, in the order saved)
      await writeFile(file, bytes);
      const failed = await load(targets(shared), { checkpointId: dir }).catch((e: unknown) => e);
      expect(failed).toBeInstanceOf(CheckpointError);
      const error = failed as CheckpointError;
      expect(error.code).toBe("CHECKSUM_MISMATCH");
      expect(error.message).toMatch(
        /CRC-32 mismatch for "t\.123" in __0_0\.\w+\.distcp @ 1968\+16: expected 0x[0-9a-f]{8}, found 0x[0-9a-f]{8}/,
      );
    });
  }
});
