import type { ReadCapabilities } from "@dcpjs/core/extend";
import {
  DEFAULT_READ_CAPABILITIES,
  type ItemLocation,
  resolveReadCapabilities,
  scheduleReads,
  splitIntoPieces,
} from "@dcpjs/core/testing";
import { describe, expect, it } from "vitest";

const KiB = 1024;
const MiB = 1024 * KiB;

/** A read item of the vectors: which file, where, and its saved chunk's key. */
interface Item extends ItemLocation {
  readonly name: string;
}

const item = (name: string, relativePath: string, offset: number, length: number, key = name): Item => ({
  name,
  relativePath,
  offset,
  length,
  key,
});

/** The schedule of `items` as plain vectors: per file, its stored ranges (distinct) and its runs' names, placement and pieces. */
function plan(
  items: Item[],
  capabilities: ReadCapabilities,
  direct: (names: string[]) => boolean = () => false,
) {
  return scheduleReads(
    items,
    (i) => i,
    // The target a direct run lands in: here just its item names.
    (range) => {
      const names = range.items.map((i) => i.name);
      return direct(names) ? names : undefined;
    },
    capabilities,
  ).map((f) => ({
    file: f.relativePath,
    ranges: f.runs.flatMap((r) => r.ranges.map((s) => [s.offset, s.length])),
    runs: f.runs.map((r) => ({
      at: [r.offset, r.length],
      chunks: r.ranges.map((c) => c.items.map((i) => i.name).join("+")),
      placement: r.placement,
      ...(r.targets ? { targets: r.targets.map((t) => t.join("+")) } : {}),
      pieces: r.pieces.length,
    })),
  }));
}

describe("the read scheduler (storage/read-schedule.ts)", () => {
  it("groups by file in first-seen order, sorts by offset, and gathers small neighbours into runs", () => {
    const out = plan(
      [
        item("b", "__0_0.distcp", 100, 100),
        item("x", "__1_0.distcp", 0, 10),
        item("a", "__0_0.distcp", 0, 100),
        item("c", "__0_0.distcp", 200 + 64 * KiB, 50), // gap exactly 64 KiB: still joins
        item("d", "__0_0.distcp", 250 + 128 * KiB + 1, 50), // gap > 64 KiB: a new run
      ],
      DEFAULT_READ_CAPABILITIES,
    );
    expect(out).toEqual([
      {
        file: "__0_0.distcp",
        ranges: [
          [0, 100],
          [100, 100],
          [200 + 64 * KiB, 50],
          [250 + 128 * KiB + 1, 50],
        ],
        runs: [
          { at: [0, 250 + 64 * KiB], chunks: ["a", "b", "c"], placement: "staged", pieces: 1 },
          { at: [250 + 128 * KiB + 1, 50], chunks: ["d"], placement: "staged", pieces: 1 },
        ],
      },
      {
        file: "__1_0.distcp",
        ranges: [[0, 10]],
        runs: [{ at: [0, 10], chunks: ["x"], placement: "staged", pieces: 1 }],
      },
    ]);
  });

  it("keeps large items alone, caps a run at batchBytes, and splits long runs into pieces", () => {
    const out = plan(
      [
        item("s1", "f", 0, 512 * KiB),
        item("big", "f", 512 * KiB, 70 * MiB), // ≥ smallItemBytes: alone, 3 pieces of 32 MiB
        item("s2", "f", 512 * KiB + 70 * MiB, 600 * KiB),
        ...Array.from({ length: 14 }, (_, i) =>
          item(`t${i}`, "f", 512 * KiB + 70 * MiB + 600 * KiB + i * 600 * KiB, 600 * KiB),
        ),
      ],
      DEFAULT_READ_CAPABILITIES,
    );
    const runs = out[0]!.runs;
    expect(runs[0]).toMatchObject({ chunks: ["s1"] });
    expect(runs[1]).toMatchObject({ chunks: ["big"], pieces: 3 });
    // 15 items of 600 KiB: 13 fit in 8 MiB (7,800 KiB), the rest start a new run.
    expect(runs.slice(2).map((r) => r.chunks.length)).toEqual([13, 2]);
    expect(runs.every((r) => r.at[1]! <= 8 * MiB || r.chunks.length === 1)).toBe(true);
  });

  it("several read items of one saved chunk share it; identical ranges are handed to the backend once", () => {
    const out = plan(
      [
        item("r0", "f", 0, 4 * MiB, "w@0"),
        item("r1", "f", 0, 4 * MiB, "w@0"),
        item("v", "f", 4 * MiB, 8, "v"),
      ],
      DEFAULT_READ_CAPABILITIES,
      (names) => names.length === 1,
    );
    expect(out[0]!.ranges).toEqual([
      [0, 4 * MiB],
      [4 * MiB, 8],
    ]);
    expect(out[0]!.runs.map((r) => [r.chunks, r.placement])).toEqual([
      [["r0+r1"], "staged"], // two destinations: staged, then copied into each
      [["v"], "direct"],
    ]);
  });

  it("with scatter reads, a run of several chunks that all land in place is read straight into them", () => {
    const items = [item("a", "f", 0, 100), item("b", "f", 164, 100), item("c", "f", 300, 100)];
    const inPlace = (names: string[]) => names[0] !== "x";
    expect(plan(items, resolveReadCapabilities({ scatterReads: true }), inPlace)[0]!.runs).toEqual([
      { at: [0, 400], chunks: ["a", "b", "c"], placement: "direct", targets: ["a", "b", "c"], pieces: 1 },
    ]);
    // Without scatter reads, or when one chunk cannot land in place, the run is staged.
    expect(plan(items, DEFAULT_READ_CAPABILITIES, inPlace)[0]!.runs[0]!.placement).toBe("staged");
    const oneStaged = [...items, item("x", "f", 400, 10)];
    expect(
      plan(oneStaged, resolveReadCapabilities({ scatterReads: true }), inPlace)[0]!.runs[0]!.placement,
    ).toBe("staged");
  });

  it("s3torchconnector's DCP-optimized rule as data: small neighbours within the gap share a run, a large item is alone in pieces", () => {
    const caps = resolveReadCapabilities({
      coalesce: { smallItemBytes: 16 * MiB, gapBytes: 32 * MiB, batchBytes: 32 * MiB },
      pieceBytes: 8 * MiB,
    });
    const items = [
      item("a", "f", 0, 10),
      item("b", "f", 10 + 16 * MiB, 10), // 16 MiB apart: within maxGapSize, joins
      item("mid", "f", 64 * MiB, 12 * MiB), // small (< 16 MiB), longer than a piece: one call, alone (batch)
      item("big", "f", 76 * MiB, 20 * MiB), // ≥ smallItemBytes: alone, 8 MiB pieces
    ];
    expect(plan(items, caps, (names) => names[0] === "big")[0]!.runs).toEqual([
      { at: [0, 20 + 16 * MiB], chunks: ["a", "b"], placement: "staged", pieces: 1 },
      { at: [64 * MiB, 12 * MiB], chunks: ["mid"], placement: "staged", pieces: 1 },
      { at: [76 * MiB, 20 * MiB], chunks: ["big"], placement: "direct", targets: ["big"], pieces: 3 },
    ]);
    // parallelThreshold Infinity: every item is small, read whole with one call.
    const whole = resolveReadCapabilities({
      ...caps,
      coalesce: { ...caps.coalesce, smallItemBytes: Infinity },
    });
    expect(plan([items[3]!], whole)[0]!.runs[0]!.pieces).toBe(1);
    // maxGapSize 0: only touching neighbours share a run.
    const tight = resolveReadCapabilities({ ...caps, coalesce: { ...caps.coalesce, gapBytes: 0 } });
    const touching = [item("x", "f", 0, 10), item("y", "f", 10, 10), item("z", "f", 21, 10)];
    expect(plan(touching, tight)[0]!.runs.map((r) => r.chunks)).toEqual([["x", "y"], ["z"]]);
  });

  it("the batch bound caps a run of small items, gaps included", () => {
    const caps = resolveReadCapabilities({
      coalesce: { smallItemBytes: MiB, gapBytes: Infinity, batchBytes: 100 },
    });
    const items = [
      item("a", "f", 0, 40),
      item("b", "f", 50, 40),
      item("c", "f", 95, 10),
      item("d", "f", 500, 1),
    ];
    expect(plan(items, caps)[0]!.runs.map((r) => [r.chunks, r.at])).toEqual([
      [
        ["a", "b"],
        [0, 90],
      ],
      [["c"], [95, 10]],
      [["d"], [500, 1]],
    ]);
  });

  it("fills what a backend leaves out from the local defaults, in one place", () => {
    expect(resolveReadCapabilities(undefined)).toEqual(DEFAULT_READ_CAPABILITIES);
    expect(resolveReadCapabilities({ rereadsOnMismatch: 9 })).toEqual({
      ...DEFAULT_READ_CAPABILITIES,
      rereadsOnMismatch: 9,
    });
    expect(splitIntoPieces(0, 8)).toEqual([{ offset: 0, length: 0 }]);
    expect(splitIntoPieces(20, 8)).toEqual([
      { offset: 0, length: 8 },
      { offset: 8, length: 8 },
      { offset: 16, length: 4 },
    ]);
  });
});
