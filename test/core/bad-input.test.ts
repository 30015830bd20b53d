import { readdir, readFile, stat, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { CheckpointException, emptyTensor, load, type StateDict, save, type Tensor } from "@dcpjs/core";
import { METADATA_FILE, type StorageInfo } from "@dcpjs/core/extend";
import { decodeMetadata, encodeMetadata, type ObjectPath } from "@dcpjs/core/testing";
import { encode } from "@msgpack/msgpack";
import { describe, expect, it } from "vitest";
import { exited, spawnTs, waitForLine } from "../support/child.js";
import { sealMetadata } from "../support/seal-metadata.js";
import { randomTensor, sameTensor } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

async function loadFailure(sd: StateDict, dir: string) {
  const e = await load(sd, { checkpointId: dir }).then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(e).toBeInstanceOf(CheckpointException);
  return (e as CheckpointException).failures[0]!;
}

async function savedCheckpoint() {
  const dir = await tempDir();
  const a = randomTensor("float32", [64], 1);
  const b = randomTensor("int16", [32], 2);
  await save({ a, b, step: 5 }, { checkpointId: dir });
  const target = () => ({ a: emptyTensor("float32", [64]), b: emptyTensor("int16", [32]), step: 0 });
  const data = (await readdir(dir)).find((f) => /^__0_0\.[0-9a-f]{12}\.distcp$/.test(f))!;
  return { dir, a, b, target, data: join(dir, data) };
}

/** Metadata whose maps a test may change (decoded metadata is read-only). */
interface EditableMetadata {
  storageData: Map<string, StorageInfo>;
  plannerData: Map<string, ObjectPath>;
}

async function rewriteMetadata(dir: string, edit: (md: EditableMetadata) => void) {
  const decoded = decodeMetadata(await readFile(join(dir, METADATA_FILE)));
  const md = {
    ...decoded,
    storageData: new Map(decoded.storageData),
    plannerData: new Map(decoded.plannerData),
  };
  edit(md);
  await writeFile(join(dir, METADATA_FILE), encodeMetadata(md));
}

describe("damaged data files", () => {
  it("refuses a truncated .distcp", async () => {
    const { dir, data, target } = await savedCheckpoint();
    await truncate(data, (await stat(data)).size - 10);
    const f = await loadFailure(target(), dir);
    expect(f.code).toBe("TRUNCATED");
    // The three small items are read with one call: 1 byte of "step", then 256 + 64 of tensors.
    expect(f.message).toMatch(
      /Expected 321 bytes at offset 0 of .*__0_0\.[0-9a-f]{12}\.distcp, but the file ends after 311 of them/,
    );
  });

  it("names the fqn whose bytes have one flipped bit", async () => {
    const { dir, data, target } = await savedCheckpoint();
    const md = decodeMetadata(await readFile(join(dir, METADATA_FILE)));
    const b = md.storageData.get("b\u00000")!;
    const bytes = await readFile(data);
    bytes[b.offset + 7]! ^= 0x10;
    await writeFile(data, bytes);
    const f = await loadFailure(target(), dir);
    expect(f.code).toBe("CHECKSUM_MISMATCH");
    expect(f.message).toMatch(/^CRC-32 mismatch for "b" in __0_0\.[0-9a-f]{12}\.distcp/);
  });

  it("refuses a missing data file", async () => {
    const { dir, data, target } = await savedCheckpoint();
    await writeFile(data, "");
    await truncate(data, 0);
    const f = await loadFailure(target(), dir);
    expect(f.code).toBe("TRUNCATED");
  });
});

describe("malformed or hostile .metadata", () => {
  it("refuses garbage, a flipped byte, and a valid frame with the wrong structure", async () => {
    const { dir, target } = await savedCheckpoint();
    const good = await readFile(join(dir, METADATA_FILE));
    await writeFile(join(dir, METADATA_FILE), "not a checkpoint");
    expect((await loadFailure(target(), dir)).code).toBe("MALFORMED_METADATA");

    const flipped = Buffer.from(good);
    flipped[20]! ^= 1;
    await writeFile(join(dir, METADATA_FILE), flipped);
    expect((await loadFailure(target(), dir)).message).toMatch(/CRC-32C of the body/);

    const body = encode({ format: "dcpjs.metadata", formatVersion: 1, version: "1.0.0", stateDict: "oops" });
    await writeFile(join(dir, METADATA_FILE), sealMetadata(body));
    const f = await loadFailure(target(), dir);
    expect(f.code).toBe("MALFORMED_METADATA");
    expect(f.message).toMatch(/expected stateDict to be a list/);
  });

  it.each(["../x", "/etc/passwd", "a/../../x", "C:\\x"])(
    "refuses a data path escaping the folder: %s",
    async (path) => {
      const { dir, target } = await savedCheckpoint();
      await rewriteMetadata(dir, (md) => {
        const key = [...md.storageData.keys()][0]!;
        md.storageData.set(key, { ...md.storageData.get(key)!, relativePath: path });
      });
      const f = await loadFailure(target(), dir);
      expect(f.code).toBe("UNSAFE_PATH");
      expect(f.message).toContain(JSON.stringify(path));
    },
  );

  it("refuses __proto__ keys in the metadata and pollutes nothing", async () => {
    const { dir, target } = await savedCheckpoint();
    await rewriteMetadata(dir, (md) => {
      md.plannerData.set("step", ["__proto__", "polluted"]);
    });
    const f = await loadFailure(target(), dir);
    expect(f.code).toBe("MALFORMED_METADATA");
    expect(f.message).toMatch(/__proto__/);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("refuses a recorded length that does not match the chunk", async () => {
    const { dir, target } = await savedCheckpoint();
    await rewriteMetadata(dir, (md) => {
      const info = md.storageData.get("a\u00000")!;
      md.storageData.set("a\u00000", { ...info, length: info.length + 4 });
    });
    expect((await loadFailure(target(), dir)).message).toMatch(
      /expected "a" at \[0\] to be stored as 256 bytes, metadata says 260/,
    );
  });
});

describe("a save that dies before the commit", () => {
  it("leaves no .metadata when one rank fails, and the folder is refused as incomplete", async () => {
    const dir = await tempDir();
    const bad = { ok: randomTensor("float32", [4]), bad: () => 1 } as unknown as StateDict;
    const e = await save(bad, { checkpointId: dir }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(CheckpointException);
    expect(await readdir(dir)).not.toContain(METADATA_FILE);
    const f = await loadFailure({ ok: emptyTensor("float32", [4]) }, dir);
    expect(f.code).toBe("INCOMPLETE_CHECKPOINT");
  });

  it("killed with SIGKILL mid-write (a real process) leaves no .metadata and the previous checkpoint loads", async () => {
    const previous = await tempDir();
    const w = randomTensor("float32", [128], 9);
    await save({ w, step: 1 }, { checkpointId: previous });
    const before = await readFile(join(previous, METADATA_FILE));

    const dir = await tempDir();
    const child = spawnTs("./save-then-hang.ts", [dir, "3"]);
    await waitForLine(child, /mid-write/);
    child.kill("SIGKILL");
    expect(await exited(child)).toBe("SIGKILL");

    const files = await readdir(dir);
    expect(files.some((f) => /^__0_0\.[0-9a-f]{12}\.distcp$/.test(f))).toBe(true);
    expect(files).not.toContain(METADATA_FILE);
    const f = await loadFailure({ w0: emptyTensor("float32", [256, 256]) }, dir);
    expect(f.code).toBe("INCOMPLETE_CHECKPOINT");

    expect(Buffer.compare(await readFile(join(previous, METADATA_FILE)), before)).toBe(0);
    const sd = { w: emptyTensor("float32", [128]) as Tensor, step: 0 };
    await load(sd, { checkpointId: previous });
    expect(sameTensor(sd.w, w)).toBe(true);
    expect(sd.step).toBe(1);
  });
});
