import { describe, expect, it } from "vitest";
import type { LoadPlan, ReadItem, StorageInfo } from "../../packages/core/src/plan/metadata.js";
import type { ItemRead } from "../../packages/core/src/storage/read-locate.js";
import {
  assertOneCommit,
  tagLocalPlan,
  wholeForProcesses,
} from "../../packages/core/src/storage/read-sharing.js";
import { PROCESS_ID } from "../../packages/core/src/storage/shared-chunk-reads.js";

const info: StorageInfo = {
  relativePath: "f",
  offset: 0,
  length: 400,
  crc32: 0,
  checksumBlocks: { blockBytes: 100, running: [0, 0, 0] },
};

/** A read item standing for "the part [start, end) of saved chunk `chunk`". */
const part = (chunk: string, start: number, end: number) =>
  ({
    type: "bytes",
    destIndex: { fqn: chunk, offset: null },
    storageIndex: { fqn: chunk, offset: null },
    start,
    end,
  }) as unknown as ReadItem;
const located = (item: ReadItem): ItemRead => {
  const { start, end } = item as unknown as { start: number; end: number };
  const chunk = item.storageIndex.fqn;
  return { item, info, chunk, key: chunk, start, end } as unknown as ItemRead;
};
const plan = (process: string | undefined, ...items: ReadItem[]): LoadPlan => ({
  items,
  ...(process ? { storageData: { process } } : {}),
});

describe("the sharing plan of in-process ranks", () => {
  it("tags a local plan with its process, and with the commit it read", () => {
    const p: LoadPlan = { items: [] };
    expect(tagLocalPlan(p, undefined).storageData).toEqual({ process: PROCESS_ID });
    expect(tagLocalPlan(p, "s1").storageData).toEqual({ process: PROCESS_ID, committed: "s1" });
  });

  it("every rank must have read one committed .metadata", () => {
    const at = (committed?: string): LoadPlan => ({
      items: [],
      ...(committed ? { storageData: { committed } } : {}),
    });
    expect(() => assertOneCommit("ck", [at("a"), at("a")])).not.toThrow();
    expect(() => assertOneCommit("ck", [at("a"), at("a"), at("b")])).toThrow(
      expect.objectContaining({ code: "CHECKPOINT_SUPERSEDED", message: expect.stringMatching(/rank 2/) }),
    );
  });

  it("ranks of one process read a chunk whole once when their parts add up to it", () => {
    const whole = wholeForProcesses(
      [plan("p", part("a", 0, 200), part("b", 0, 100)), plan("p", part("a", 200, 400), part("b", 100, 200))],
      located,
    );
    expect(whole.map((s) => [...s])).toEqual([["a"], ["a"]]);
  });

  it("leaves alone ranks of other processes, untagged ranks and chunks one rank reads", () => {
    const whole = wholeForProcesses(
      [plan("p", part("a", 0, 400)), plan("q", part("a", 0, 400)), plan(undefined, part("a", 0, 400))],
      located,
    );
    expect(whole.map((s) => s.size)).toEqual([0, 0, 0]);
  });
});
