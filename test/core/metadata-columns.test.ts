import { DefaultLoadPlanner, type Metadata, type StateDict } from "@dcpjs/core";
import {
  metadataColumns,
  plainMetadata,
  type StorageInfo,
  type TensorStorageMetadata,
} from "@dcpjs/core/extend";
import { decodeMetadata, encodeMetadata } from "@dcpjs/core/testing";
import { describe, expect, it } from "vitest";

/** A map-built metadata: `w` [rows, 3] saved by `ranks` row shards (out of order), a value `step`. */
function mapMetadata(rows: number, ranks: number): Metadata {
  const per = rows / ranks;
  const order = Array.from({ length: ranks }, (_, r) => (r * 7) % ranks);
  const chunks = order.map((r) => ({ offsets: [r * per, 0], sizes: [per, 3] }));
  const storageData = new Map<string, StorageInfo>();
  for (const [i, c] of chunks.entries())
    storageData.set(`w\u0000${c.offsets.join(",")}`, {
      relativePath: `__${i % 3}_0.distcp`,
      offset: i * per * 12,
      length: per * 12,
      crc32: i,
      ...(i === 2 ? { contentHash: "00112233445566778899aabbccddeeff" } : {}),
      ...(i === 3 ? { checksumBlocks: { blockBytes: 16, running: [5, 6] } } : {}),
    });
  storageData.set("step\u0000", { relativePath: "__0_0.distcp", offset: 9999, length: 3, crc32: 1 });
  const w: TensorStorageMetadata = {
    type: "tensor",
    properties: { dtype: "float32" },
    size: [rows, 3],
    chunks,
  };
  return {
    version: "1.0.0",
    stateDictMetadata: new Map<string, TensorStorageMetadata | { type: "bytes" }>([
      ["w", w],
      ["step", { type: "bytes" }],
    ]),
    plannerData: new Map([
      ["w", ["w"]],
      ["step", ["step"]],
    ]),
    storageData,
    storageMeta: { saveId: "s" },
  };
}

function planFor(md: Metadata, rows: number, ranks: number, rank: number) {
  const per = rows / ranks;
  const sd: StateDict = {
    w: {
      dtype: "float32",
      shape: [rows, 3],
      shards: [
        {
          offsets: [rank * per, 0],
          tensor: { dtype: "float32", shape: [per, 3], data: new Float32Array(per * 3) },
        },
      ],
    },
    step: 0,
  };
  const planner = new DefaultLoadPlanner();
  planner.setUpPlanner(sd, md, false);
  return planner.createLocalPlan();
}

describe("columnar metadata", () => {
  it("decodes into columns behind the same DCP-shaped maps as the metadata encoded", () => {
    const md = mapMetadata(96, 24);
    const decoded = decodeMetadata(encodeMetadata(md));
    expect(metadataColumns(decoded)).toBeDefined();
    expect(metadataColumns(md)).toBeUndefined();
    expect([...decoded.stateDictMetadata]).toEqual([...md.stateDictMetadata]);
    expect([...decoded.storageData]).toEqual([...md.storageData]);
    expect(decoded.storageData.size).toBe(md.storageData.size);
    expect([...decoded.storageData.keys()]).toEqual([...md.storageData.keys()]);
    expect([...decoded.storageData.values()]).toEqual([...md.storageData.values()]);
    for (const key of md.storageData.keys())
      expect(decoded.storageData.get(key)).toEqual(md.storageData.get(key));
    expect(decoded.storageData.get("w\u00001,0")).toBeUndefined();
    expect(decoded.storageData.has("nope\u0000")).toBe(false);
    // One object per storage entry, whichever way it is read.
    const key = [...md.storageData.keys()][5]!;
    expect(decoded.storageData.get(key)).toBe(decoded.storageData.get(key));
    expect([...decoded.plannerData]).toEqual([...md.plannerData]);
    expect(decoded.storageMeta).toEqual(md.storageMeta);
  });

  it("plans the same loads from columns as from maps, for every rank of another sharding", () => {
    const md = mapMetadata(96, 24);
    const decoded = decodeMetadata(encodeMetadata(md));
    for (const ranks of [1, 4, 32]) {
      if (96 % ranks !== 0) continue;
      for (let rank = 0; rank < ranks; rank++)
        expect(planFor(decoded, 96, ranks, rank)).toEqual(planFor(md, 96, ranks, rank));
    }
  });

  it("builds stateDictMetadata's entries when read, a read-only Map equal to the one encoded", () => {
    const md = mapMetadata(8, 2);
    const view = decodeMetadata(encodeMetadata(md)).stateDictMetadata;
    expect(view).toBeInstanceOf(Map);
    expect(view.size).toBe(2);
    expect(view).toEqual(md.stateDictMetadata);
    expect(new Map(view)).toEqual(md.stateDictMetadata);
    expect([...view.keys()]).toEqual(["w", "step"]);
    expect([...view.values()]).toEqual([...md.stateDictMetadata.values()]);
    const seen: string[] = [];
    view.forEach((_entry, fqn) => {
      seen.push(fqn);
    });
    expect(seen).toEqual(["w", "step"]);
    expect(view.has("w") && !view.has("nope")).toBe(true);
    expect(view.get("nope")).toBeUndefined();
    // One object per entry, whichever way it is read.
    expect(view.get("w")).toBe([...view.values()][0]);
    expect(() => (view as Map<string, unknown>).set("x", { type: "bytes" })).toThrow(TypeError);
    expect(() => (view as Map<string, unknown>).delete("w")).toThrow(TypeError);
  });

  it("is no longer read as columns once a map is replaced", () => {
    const decoded = decodeMetadata(encodeMetadata(mapMetadata(8, 2)));
    const changed: Metadata = { ...decoded, storageData: new Map(decoded.storageData) };
    expect(metadataColumns(changed)).toBeUndefined();
    expect(metadataColumns({ ...decoded, storageMeta: { loadId: "l" } })).toBeDefined();
  });
});

describe("plainMetadata", () => {
  it("gives maps a message can carry, equal to the views", () => {
    const decoded = decodeMetadata(encodeMetadata(mapMetadata(8, 2)));
    const cloned = structuredClone(plainMetadata(decoded));
    expect([...cloned.storageData]).toEqual([...decoded.storageData]);
    expect([...cloned.stateDictMetadata]).toEqual([...decoded.stateDictMetadata]);
    expect(metadataColumns(cloned)).toBeUndefined();
  });
});
