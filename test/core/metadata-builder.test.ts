import { MetadataBuilder, metadataColumns, withWriteResults } from "@dcpjs/core/extend";
import { decodeMetadata, encodeMetadata } from "@dcpjs/core/testing";
import { describe, expect, it } from "vitest";

/** A two-rank metadata: `w` [4, 2] sharded by rows (chunks added rank by rank), a value `step`. */
function built() {
  const b = new MetadataBuilder({ storageMeta: { saveId: "s" } });
  const w = b.addTensor("w", "float32", [4, 2]);
  const v = b.addTensor("v", "int64", [3]);
  const ids = [b.addChunk(w, [0, 0], [2, 2]), b.addChunk(v, [0], [3])];
  ids.push(b.addValue("step"), b.addChunk(w, [9, 2, 0], [9, 2, 2], 1));
  b.setPath("w", ["w"]);
  b.setPath("step", ["step"]);
  return { b, ids };
}

describe("MetadataBuilder", () => {
  it("groups chunks by tensor in the order added, behind DCP-shaped maps", () => {
    const md = built().b.build();
    expect(metadataColumns(md)).toBeDefined();
    expect([...md.stateDictMetadata.keys()]).toEqual(["w", "v", "step"]);
    expect(md.stateDictMetadata.get("w")).toEqual({
      type: "tensor",
      properties: { dtype: "float32" },
      size: [4, 2],
      chunks: [
        { offsets: [0, 0], sizes: [2, 2] },
        { offsets: [2, 0], sizes: [2, 2] },
      ],
    });
    expect(md.storageData.size).toBe(0);
    expect(md.plannerData.get("step")).toEqual(["step"]);
  });

  it("records storage entries by item and encodes as the maps would", () => {
    const { b, ids } = built();
    for (const [i, id] of ids.entries())
      b.setStorage(id, {
        relativePath: "__0_0.distcp",
        offset: i * 100,
        length: [16, 24, 5, 16][i]!,
        crc32: i + 1,
        ...(i === 1 ? { contentHash: "0123456789abcdef0123456789abcdef" } : {}),
      });
    const md = b.build();
    expect(md.storageData.size).toBe(4);
    expect([...md.storageData.keys()]).toEqual(["w\u00000,0", "w\u00002,0", "v\u00000", "step\u0000"]);
    expect(md.storageData.get("w\u00002,0")).toEqual({
      relativePath: "__0_0.distcp",
      offset: 300,
      length: 16,
      crc32: 4,
    });
    expect(md.storageData.get("v\u00000")?.contentHash).toBe("0123456789abcdef0123456789abcdef");
    const decoded = decodeMetadata(encodeMetadata(md));
    expect([...decoded.storageData]).toEqual([...md.storageData]);
    expect([...decoded.stateDictMetadata]).toEqual([...md.stateDictMetadata]);
  });

  it("takes a writer's results into columns (withWriteResults)", () => {
    const md = built().b.build();
    const info = (offset: number, length: number) => ({
      relativePath: "__1_0.distcp",
      offset,
      length,
      crc32: 7,
    });
    const committed = withWriteResults(md, [
      [
        { index: { fqn: "w", offset: [2, 0] }, sizeInBytes: 16, storageData: info(0, 16) },
        { index: { fqn: "step", offset: null }, sizeInBytes: 5, storageData: info(16, 5) },
      ],
      [
        { index: { fqn: "w", offset: [0, 0] }, sizeInBytes: 16, storageData: info(21, 16) },
        { index: { fqn: "v", offset: [0] }, sizeInBytes: 24, storageData: info(37, 24) },
      ],
    ]);
    expect(metadataColumns(committed)?.storage).toBeDefined();
    expect(committed.storageData.get("w\u00000,0")?.offset).toBe(21);
    expect(committed.storageData.get("step\u0000")?.offset).toBe(16);
  });

  it("refuses a second entry of one fqn and storage for some items only", () => {
    const { b, ids } = built();
    expect(() => b.addValue("w")).toThrow(/Expected each fqn once/);
    b.setStorage(ids[0]!, { relativePath: "f", offset: 0, length: 16, crc32: 1 });
    expect(() => b.build()).toThrow(/Expected a storage entry for every item/);
  });
});
