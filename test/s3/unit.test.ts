import { CheckpointError } from "@dcpjs/core";
import { resolveReadCapabilities, scheduleReads } from "@dcpjs/core/testing";
import {
  BinaryPrefixStrategy,
  createS3Client,
  DefaultPrefixStrategy,
  HexPrefixStrategy,
  parseS3Uri,
  RoundRobinPrefixStrategy,
  S3ReaderConstructor,
} from "@dcpjs/s3";
import {
  DCPOptimizedS3Reader,
  RangeBasedS3Reader,
  SequentialS3Reader,
  toCheckpointError,
} from "@dcpjs/s3/extend";
import { escapePath, resolveTransferSettings } from "@dcpjs/s3/testing";
import { describe, expect, it } from "vitest";

describe("prefix strategies (s3torchconnector's vectors)", () => {
  it("Default: __{rank}_", () => {
    const s = new DefaultPrefixStrategy();
    expect([0, 100, -1].map((r) => s.generatePrefix(r))).toEqual(["__0_", "__100_", "__-1_"]);
  });

  it("Binary: reversed zero-padded binary, world 4 and with an epoch", () => {
    const s = new BinaryPrefixStrategy();
    expect(s.prefixMap(4)).toEqual(["0000000000", "1000000000", "0100000000", "1100000000"]);
    expect(s.generatePrefix(3, 4)).toBe("1100000000/__3_");
    expect(new BinaryPrefixStrategy({ epochNum: 3 }).generatePrefix(0, 4)).toBe("0000000000/epoch_3/__0_");
    expect(s.generatePrefix(5, 8)).toBe("1010000000/__5_");
    expect(s.generatePrefix(1, 1)).toBe("0000000000/__1_");
  });

  it("Binary with epochNum 4, minPrefixLength 4, prefixCount 4", () => {
    const s = new BinaryPrefixStrategy({ epochNum: 4, minPrefixLength: 4, prefixCount: 4 });
    expect([0, 1, 2, 3].map((r) => s.generatePrefix(r, 99))).toEqual([
      "0000/epoch_4/__0_",
      "1000/epoch_4/__1_",
      "0100/epoch_4/__2_",
      "1100/epoch_4/__3_",
    ]);
  });

  it("Hex: world 16, 2 and 257", () => {
    const s = new HexPrefixStrategy();
    expect(s.generatePrefix(10, 16)).toBe("a000000000/__10_");
    expect(s.generatePrefix(255, 16)).toBe("f000000000/__255_");
    expect(new HexPrefixStrategy({ epochNum: 5 }).generatePrefix(10, 16)).toBe("a000000000/epoch_5/__10_");
    expect(s.generatePrefix(1, 2)).toBe("1000000000/__1_");
    expect(s.generatePrefix(256, 257)).toBe("0010000000/__256_");
    expect(s.generatePrefix(257, 257)).toBe("0000000000/__257_");
    expect(s.generatePrefix(100, 257)).toBe("4600000000/__100_");
    expect(s.prefixMap(257)).toHaveLength(257);
  });

  it("RoundRobin over the user's prefixes", () => {
    const s = new RoundRobinPrefixStrategy(["prefix1", "prefix2", "prefix3"]);
    expect(s.generatePrefix(0)).toBe("prefix1/__0_");
    expect(s.generatePrefix(3)).toBe("prefix1/__3_");
    expect(
      new RoundRobinPrefixStrategy(["prefix1", "prefix2", "prefix3"], { epochNum: 5 }).generatePrefix(4),
    ).toBe("prefix2/epoch_5/__4_");
  });

  it("rejects bad options", () => {
    expect(() => new RoundRobinPrefixStrategy([])).toThrow("userPrefixes must not be empty");
    expect(() => new BinaryPrefixStrategy({ minPrefixLength: 0 })).toThrow(/minPrefixLength/);
    expect(() => new HexPrefixStrategy({ prefixCount: 0 })).toThrow(/prefixCount/);
    expect(() => new HexPrefixStrategy({ epochNum: 1.5 })).toThrow(/epochNum/);
  });
});

describe("s3:// URIs", () => {
  it("parses bucket and key, the key possibly empty", () => {
    expect(parseS3Uri("s3://b/k/x")).toEqual({ bucket: "b", key: "k/x" });
    expect(parseS3Uri("s3://bucket")).toEqual({ bucket: "bucket", key: "" });
  });

  it("rejects other schemes and an empty bucket", () => {
    expect(() => parseS3Uri("foobar")).toThrow(/^Only s3:\/\/ URIs are supported/);
    expect(() => parseS3Uri("s3://")).toThrow(/^Bucket name must be non-empty/);
    expect(() => parseS3Uri("s3:///key")).toThrow(/^Bucket name must be non-empty/);
  });

  it("escapes each key segment as Python's quote(safe='')", () => {
    expect(escapePath("a/test_[+re.name]!@£$%^&*_(src)")).toBe(
      "a/test_%5B%2Bre.name%5D%21%40%C2%A3%24%25%5E%26%2A_%28src%29",
    );
    expect(escapePath("a//b")).toBe("a//b");
  });
});

describe("client config validation", () => {
  it("checks part size and attempts up front, saying what was expected", () => {
    expect(() => resolveTransferSettings({ partSize: 1024 * 1024 })).toThrow(
      "Expected `partSize` to be an integer between 5242880 bytes and 5368709120 bytes, got 1048576 (number)",
    );
    expect(() => resolveTransferSettings({ partSize: 6 * 1024 ** 3 })).toThrow(/partSize/);
    expect(() => resolveTransferSettings({ maxAttempts: 65 })).toThrow(
      /`maxAttempts` to be an integer between 1 and 64/,
    );
    expect(resolveTransferSettings({})).toEqual({ partSize: 8 * 1024 * 1024, queueSize: 4 });
  });
});

describe("range coalescing (DCP-optimized reader)", () => {
  const r = (start: number, end: number) => ({ start, end });
  /** The runs the read scheduler makes of `ranges` by the DCP-optimized rule (the stream is opened with them). */
  const coalesceRanges = (ranges: { start: number; end: number }[], maxGapSize: number) => {
    const { capabilities } = S3ReaderConstructor.dcpOptimized({ maxGapSize });
    const items = ranges.map((x, i) => ({
      relativePath: "f",
      offset: x.start,
      length: x.end - x.start,
      key: `${i}`,
    }));
    const [file] = scheduleReads(
      items,
      (i) => i,
      () => undefined,
      resolveReadCapabilities(capabilities),
    );
    return file!.runs.map((run) => ({ start: run.offset, end: run.offset + run.length, items: run.ranges }));
  };
  it("groups neighbours within the gap and splits beyond it", () => {
    const groups = coalesceRanges([r(0, 10), r(10, 20), r(25, 30), r(100, 110)], 5);
    expect(groups.map((g) => [g.start, g.end, g.items.length])).toEqual([
      [0, 30, 3],
      [100, 110, 1],
    ]);
    expect(coalesceRanges([r(0, 10), r(1000, 1010)], Number.POSITIVE_INFINITY)).toHaveLength(1);
  });

  it("drops empty ranges, merges identical ones, rejects overlapping and unsorted ones", () => {
    const client = createS3Client({ endpoint: "http://127.0.0.1:9", region: "us-east-1" });
    const ref = { client, bucket: "b", key: "k/__0_0.distcp", uri: "s3://b/k/__0_0.distcp" };
    const opened = (runs: { start: number; end: number }[]) => new DCPOptimizedS3Reader(ref, runs).runs;
    expect(opened([r(0, 0), r(0, 10), r(0, 10), r(10, 10)]).map((g) => [g.start, g.end])).toEqual([[0, 10]]);
    expect(() => opened([r(0, 10), r(5, 15)])).toThrow(/^Overlapping ranges: 0-10 and 5-15/);
    expect(() => opened([r(10, 20), r(0, 5)])).toThrow(/^Unsorted ranges/);
    expect(() => opened([r(5, 2)])).toThrow(/^Invalid range/);
  });
});

describe("reader argument checks (s3torchconnector's errors)", () => {
  const client = createS3Client({ endpoint: "http://127.0.0.1:9", region: "us-east-1" });
  const ref = { client, bucket: "b", key: "k/__0_0.distcp", uri: "s3://b/k/__0_0.distcp" };

  it("dcpOptimized refuses a maxGapSize of null, a string or a negative number", () => {
    for (const maxGapSize of [null, "1", -1]) {
      expect(() => S3ReaderConstructor.dcpOptimized({ maxGapSize: maxGapSize as number })).toThrow(
        /^Expected maxGapSize to be a number >= 0 \(or Infinity\), got/,
      );
    }
    expect(() => S3ReaderConstructor.dcpOptimized({ maxGapSize: Number.POSITIVE_INFINITY })).not.toThrow();
  });

  it("every reader refuses an empty bucket or key", () => {
    const ranges = [{ start: 0, end: 4 }];
    for (const [bucket, key, message] of [
      ["", "k", "Bucket should be specified"],
      ["b", "", "Key should be specified"],
    ] as const) {
      const bad = { ...ref, bucket, key };
      expect(() => new DCPOptimizedS3Reader(bad, ranges)).toThrow(message);
      expect(() => new RangeBasedS3Reader(bad, 0)).toThrow(message);
      expect(() => new SequentialS3Reader(bad)).toThrow(message);
    }
  });

  it("the DCP-optimized reader refuses a read outside the runs it was opened with, before any request", async () => {
    const reader = new DCPOptimizedS3Reader(ref, [
      { start: 0, end: 4 },
      { start: 10, end: 20 },
    ]);
    expect(reader.runs).toEqual([
      { start: 0, end: 4 },
      { start: 10, end: 20 },
    ]);
    for (const [offset, length] of [
      [2, 4],
      [4, 2],
      [18, 4],
    ] as const) {
      const error = await reader.read(offset, length).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: "INVALID_ARGUMENT" });
      expect((error as Error).message).toMatch(/^Expected a range inside one of the runs/);
    }
    expect(await reader.size()).toBe(20);
  });

  it("every reader rejects read(0, -1) with INVALID_ARGUMENT before any request", async () => {
    for (const reader of [
      new DCPOptimizedS3Reader(ref, [{ start: 0, end: 4 }]),
      new RangeBasedS3Reader(ref, 0),
      new SequentialS3Reader(ref),
    ]) {
      const error = await reader.read(0, -1).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: "INVALID_ARGUMENT" });
      expect((error as Error).message).toMatch(/^Expected `length` to be an integer >= 0 bytes, got -1/);
    }
  });
});

describe("S3 errors: ABORTED only when the caller's signal fired", () => {
  const sdkAbort = () => Object.assign(new Error("Request aborted"), { name: "AbortError" });
  const ours = () => new CheckpointError("ABORTED", "Aborted while waiting for an S3 request slot");
  const uri = "s3://b/k";

  it("an SDK or lib-storage AbortError nobody here asked for is an IO_ERROR naming it", () => {
    for (const signal of [undefined, new AbortController().signal]) {
      for (const error of [sdkAbort(), ours()]) {
        const mapped = toCheckpointError(error, "read", uri, signal);
        expect(mapped.code).toBe("IO_ERROR");
        expect(mapped.message).toMatch(
          /^Failed to read s3:\/\/b\/k: the request was stopped though the caller's signal did not fire/,
        );
        expect(mapped.cause).toBe(error);
      }
    }
  });

  it("the same errors are ABORTED when the caller's signal fired", () => {
    const controller = new AbortController();
    controller.abort();
    expect(toCheckpointError(sdkAbort(), "list", uri, controller.signal).code).toBe("ABORTED");
    const own = ours();
    expect(toCheckpointError(own, "list", uri, controller.signal)).toBe(own);
  });
});
