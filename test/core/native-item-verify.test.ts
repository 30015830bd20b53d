import { ChecksumMismatchError } from "@dcpjs/core";
import { describe, expect, it } from "vitest";
import {
  blockChecksumFields,
  checksumFields,
  computeChecksum,
  runningChecksums,
} from "../../packages/core/src/formats/checksum.js";
import type { ChecksumOffload, StoredRead } from "../../packages/core/src/formats/item-format.js";
import { NATIVE_ITEM_FORMAT } from "../../packages/core/src/formats/native-item-format.js";
import { verifyChecksum } from "../../packages/core/src/formats/native-item-verify.js";
import type { StorageInfo, WriteItem } from "../../packages/core/src/plan/metadata.js";

/** An offload that runs "on a worker" (here: a microtask) from `minBytes` on, counting its tasks. */
function offload(minBytes: number) {
  const tasks: string[] = [];
  const o: ChecksumOffload = {
    runsOffThread: (bytes) => bytes >= minBytes,
    runningChecksums: async (algorithm, bytes, blockBytes, previous) => {
      tasks.push("running");
      return runningChecksums(algorithm, bytes, blockBytes, previous);
    },
    checksums: async (algorithm, parts) => {
      tasks.push("batch");
      return parts.map((p) => computeChecksum(algorithm, p));
    },
  };
  return { o, tasks };
}

const bytes = (n: number, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 255);
const read = (stored: Uint8Array, info: StorageInfo, first = 0): StoredRead => ({
  stored,
  info,
  expect: { kind: "value" },
  first,
  fqn: "x",
  where: () => "f @ 0+n",
});
const entry = (data: Uint8Array, blockBytes?: number): StorageInfo => ({
  relativePath: "f",
  offset: 0,
  length: data.byteLength,
  ...(blockBytes
    ? blockChecksumFields("crc32", runningChecksums("crc32", data, blockBytes), blockBytes)
    : checksumFields("crc32", computeChecksum("crc32", data))),
});
const flipped = (data: Uint8Array, at: number) => {
  const copy = data.slice();
  copy[at]! ^= 1;
  return copy;
};

describe("the native item format verifies what a reader read", () => {
  const verify = NATIVE_ITEM_FORMAT.verify!;
  const verifyRun = NATIVE_ITEM_FORMAT.verifyRun!;

  it("on the calling thread below the offload's size: the payload back, or a mismatch naming the fqn", () => {
    const { o, tasks } = offload(Number.POSITIVE_INFINITY);
    const data = bytes(1000);
    expect(verify(read(data, entry(data)), o)).toBe(data);
    expect(() => verify(read(flipped(data, 7), entry(data)), o)).toThrow(ChecksumMismatchError);
    expect(tasks).toEqual([]);
  });

  it("on a worker from the offload's size on: the promise rejects on damage", async () => {
    const { o, tasks } = offload(100);
    const data = bytes(1000);
    await expect(verify(read(data, entry(data, 256)), o)).resolves.toBe(data);
    await expect(verify(read(flipped(data, 600), entry(data, 256)), o)).rejects.toThrow(/block 2 of 4/);
    expect(tasks).toEqual(["running", "running"]);
  });

  it("a partial read is checked by the running checksums of the blocks it read", () => {
    const { o } = offload(Number.POSITIVE_INFINITY);
    const data = bytes(1000);
    const info = entry(data, 256);
    expect(verify(read(data.subarray(256, 768), info, 1), o)).toEqual(data.subarray(256, 768));
    expect(() => verify(read(flipped(data, 300).subarray(256, 768), info, 1), o)).toThrow(
      ChecksumMismatchError,
    );
  });

  it("a run of small items is checked by one worker task, or left to item-by-item checks", async () => {
    const { o, tasks } = offload(100);
    const a = bytes(60, 1);
    const b = bytes(60, 2);
    await expect(verifyRun([read(a, entry(a)), read(b, entry(b))], o, 120)).resolves.toEqual([a, b]);
    await expect(verifyRun([read(a, entry(a)), read(flipped(b, 3), entry(b))], o, 120)).rejects.toThrow(
      ChecksumMismatchError,
    );
    expect(tasks).toEqual(["batch", "batch"]);
    expect(verifyRun([read(a, entry(a))], o, 120)).toBeUndefined(); // one item
    expect(verifyRun([read(a, entry(a)), read(b, entry(b))], o, 99)).toBeUndefined(); // too small
    const big = bytes(600);
    expect(verifyRun([read(a, entry(a)), read(big, entry(big, 256))], o, 660)).toBeUndefined(); // blocks
  });

  it("a payload is checked against the checksum its frame records", () => {
    const { o } = offload(Number.POSITIVE_INFINITY);
    const data = bytes(100);
    const sum = { algorithm: "crc32" as const, value: computeChecksum("crc32", data) };
    expect(verifyChecksum(data, sum, undefined, 0, "x", () => "here", o)).toBe(data);
    expect(() => verifyChecksum(flipped(data, 1), sum, undefined, 0, "x", () => "here", o)).toThrow(/here/);
  });

  it("frames a large tensor on a worker while it is written, recording what frame would", async () => {
    const { o, tasks } = offload(100);
    const data = bytes(3 * 1024 * 1024 + 5);
    const tensor = { type: "tensor", index: { fqn: "x", offset: [0] } } as unknown as WriteItem;
    const onWorker = NATIVE_ITEM_FORMAT.frameOnWorker!(tensor, data, o)!;
    expect(onWorker.parts).toEqual([data]);
    expect(await onWorker.info).toEqual(NATIVE_ITEM_FORMAT.frame(tensor, data).info);
    expect(tasks).toEqual(["running"]);
    const value = { type: "bytes", index: { fqn: "s", offset: null } } as unknown as WriteItem;
    expect(NATIVE_ITEM_FORMAT.frameOnWorker!(value, data, o)).toBeUndefined();
    expect(NATIVE_ITEM_FORMAT.frameOnWorker!(tensor, data.subarray(0, 99), o)).toBeUndefined();
  });
});
