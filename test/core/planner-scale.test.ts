import type { Metadata } from "@dcpjs/core";
import type { ChunkStorageMetadata, TensorStorageMetadata } from "@dcpjs/core/extend";
import {
  boxesOverlap,
  boxIntersection,
  createReadItemsForChunkList,
  type TensorReadItem,
  validateGlobalPlan,
} from "@dcpjs/core/testing";
import { describe, expect, it } from "vitest";

/** A small deterministic PRNG (mulberry32), so a failure names its seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function int(r: () => number, lo: number, hi: number): number {
  return lo + Math.floor(r() * (hi - lo + 1));
}

/** Cuts `[0, n)` into 1..max pieces at random places. */
function cuts(r: () => number, n: number, max: number): [number, number][] {
  const points = new Set<number>([0, n]);
  const pieces = int(r, 1, max);
  for (let i = 1; i < pieces; i++) points.add(int(r, 0, n));
  const sorted = [...points].sort((a, b) => a - b);
  return sorted.slice(1).map((end, i) => [sorted[i]!, end - sorted[i]!]);
}

/** A random grid of boxes over `shape`: each dimension cut independently, in a shuffled order. */
function grid(r: () => number, shape: number[], max: number): ChunkStorageMetadata[] {
  let boxes: { offsets: number[]; sizes: number[] }[] = [{ offsets: [], sizes: [] }];
  for (const n of shape) {
    const pieces = cuts(r, n, max);
    boxes = boxes.flatMap((b) =>
      pieces.map(([o, s]) => ({ offsets: [...b.offsets, o], sizes: [...b.sizes, s] })),
    );
  }
  if (r() < 0.5)
    for (let i = boxes.length - 1; i > 0; i--) {
      const j = int(r, 0, i);
      [boxes[i], boxes[j]] = [boxes[j]!, boxes[i]!];
    }
  return boxes;
}

/** What createReadItemsForChunkList did before the index: test every saved chunk in order. */
function scanned(
  fqn: string,
  md: TensorStorageMetadata,
  local: readonly ChunkStorageMetadata[],
): TensorReadItem[] {
  const items: TensorReadItem[] = [];
  local.forEach((shard, idx) => {
    md.chunks.forEach((saved, storageIdx) => {
      const meet = boxIntersection(shard, saved);
      if (!meet) return;
      items.push({
        type: "tensor",
        destIndex: { fqn, offset: [...shard.offsets], index: idx },
        destOffsets: meet.destOffsets,
        storageIndex: { fqn, offset: saved.offsets, index: storageIdx },
        storageOffsets: meet.storageOffsets,
        lengths: meet.lengths,
      });
    });
  });
  return items;
}

function tensorMd(size: number[], chunks: ChunkStorageMetadata[]): TensorStorageMetadata {
  return { type: "tensor", properties: { dtype: "float32" }, size, chunks };
}

describe("load planning by an index of saved chunks", () => {
  it("gives the same read items as scanning every saved chunk, on random layouts", () => {
    for (let seed = 1; seed <= 300; seed++) {
      const r = rng(seed);
      const ndim = int(r, 1, 3);
      const shape = Array.from({ length: ndim }, () => int(r, 1, 40));
      // Many saved chunks (so the index is used), few or many local ones.
      const saved = grid(r, shape, 24);
      const local = grid(r, shape, 5);
      const md = tensorMd(shape, saved);
      const got = createReadItemsForChunkList("t", md, local);
      expect(got, `seed ${seed}`).toEqual(scanned("t", md, local));
      // Again, from the index kept for these chunks.
      expect(createReadItemsForChunkList("t", md, local.slice(0, 1)), `seed ${seed}`).toEqual(
        scanned("t", md, local.slice(0, 1)),
      );
    }
  });

  it("gives the same read items on overlapping, empty and out-of-range saved chunks", () => {
    for (let seed = 1; seed <= 200; seed++) {
      const r = rng(seed);
      const shape = [int(r, 1, 30), int(r, 1, 30)];
      const saved = Array.from({ length: int(r, 16, 60) }, () => ({
        offsets: [int(r, -5, shape[0]! + 5), int(r, -5, shape[1]! + 5)],
        sizes: [int(r, 0, 12), int(r, 0, 12)],
      }));
      const local = grid(r, shape, 4);
      const md = tensorMd(shape, saved);
      expect(createReadItemsForChunkList("t", md, local), `seed ${seed}`).toEqual(scanned("t", md, local));
    }
  });

  it("gives the same read items on FSDP-style row shards, in order and not", () => {
    for (const ranks of [16, 17, 64]) {
      const rows = Array.from({ length: ranks }, (_, r) => ({ offsets: [r * 3, 0], sizes: [3, 8] }));
      for (const saved of [rows, [...rows].reverse()]) {
        const md = tensorMd([ranks * 3, 8], saved);
        for (const local of [
          [{ offsets: [5, 0], sizes: [7, 8] }],
          [{ offsets: [0, 2], sizes: [ranks * 3, 3] }],
        ])
          expect(createReadItemsForChunkList("t", md, local)).toEqual(scanned("t", md, local));
      }
    }
  });

  it("sees chunks added to a tensor after its index was built", () => {
    const chunks = Array.from({ length: 20 }, (_, i) => ({ offsets: [i * 2], sizes: [2] }));
    const md = tensorMd([44], chunks);
    const local = [{ offsets: [0], sizes: [44] }];
    expect(createReadItemsForChunkList("t", md, local)).toHaveLength(20);
    chunks.push({ offsets: [40], sizes: [4] });
    expect(createReadItemsForChunkList("t", md, local)).toEqual(scanned("t", md, local));
  });
});

describe("global-plan validation by a sweep", () => {
  /** The overlap messages comparing every pair gives, in its order. */
  function pairwise(fqn: string, chunks: ChunkStorageMetadata[]): string[] {
    const out: string[] = [];
    chunks.forEach((a, i) => {
      for (let j = i + 1; j < chunks.length; j++)
        if (boxesOverlap(a, chunks[j]!))
          out.push(
            `"${fqn}": chunks at [${a.offsets.join(", ")}] and [${chunks[j]!.offsets.join(", ")}] overlap`,
          );
    });
    return out;
  }

  it("reports the same overlaps, in the same order, as comparing every pair", () => {
    for (let seed = 1; seed <= 300; seed++) {
      const r = rng(seed);
      const ndim = int(r, 1, 3);
      const shape = Array.from({ length: ndim }, () => int(r, 1, 20));
      const chunks =
        r() < 0.3
          ? grid(r, shape, 8)
          : Array.from({ length: int(r, 1, 40) }, () => ({
              offsets: shape.map((n) => int(r, 0, n - 1)),
              sizes: shape.map((n) => int(r, 0, Math.ceil(n / 2))),
            }));
      const md: Metadata = {
        version: "1.0.0",
        stateDictMetadata: new Map([["t", tensorMd(shape, chunks)]]),
        plannerData: new Map(),
        storageData: new Map(),
        storageMeta: {},
      };
      const problems = validateGlobalPlan(1, md).filter((p) => p.endsWith("overlap"));
      expect(problems, `seed ${seed}`).toEqual(pairwise("t", chunks));
    }
  });
});
