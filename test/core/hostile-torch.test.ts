import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  CheckpointError,
  CheckpointException,
  loadStateDictFromKeys,
  type Metadata,
  MetadataError,
} from "@dcpjs/core";
import { decodeCheckpointMetadata, METADATA_FILE, metadataIndexKey } from "@dcpjs/core/extend";
import { encodeMetadata, parseSafetensorsHeader } from "@dcpjs/core/testing";
import { encode } from "@msgpack/msgpack";
import { crc32 } from "@node-rs/crc32";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decodeTorchItem, unzstd } from "../../packages/core/src/formats/torch/torch-item.js";
import { TORCH_ITEM_FORMAT } from "../../packages/core/src/formats/torch/torch-item-format.js";
import { decodeTorchMetadata } from "../../packages/core/src/formats/torch/torch-metadata.js";
import { encodeTorchMetadata } from "../../packages/core/src/formats/torch/torch-write.js";
import {
  DecodeBudget,
  type DecodeLimit,
  DecodeLimitError,
  decodeLimits,
} from "../../packages/core/src/model/decode-budget.js";
import { assertMsgpackWithinLimits } from "../../packages/core/src/model/msgpack-bounds.js";
import { tempDir } from "../support/tmp.js";

// Hostile inputs for every decoder of untrusted bytes (issue #21): each is refused with a coded
// CheckpointError by the decode budget's value, byte or depth count (docs/format.md, "Decode
// bounds"; the measured times are there, not asserted here) adding at most 256 MiB — and zips that
// two readers could read differently are refused.

/** Pickle opcodes used below. */
const OP = {
  PROTO4: [0x80, 0x04],
  EMPTY_DICT: 0x7d,
  EMPTY_TUPLE: 0x29,
  EMPTY_LIST: 0x5d,
  TUPLE1: 0x85,
  TUPLE2: 0x86,
  TUPLE3: 0x87,
  MARK: 0x28,
  TUPLE: 0x74,
  LIST: 0x6c,
  DICT: 0x64,
  APPEND: 0x61,
  APPENDS: 0x65,
  SETITEM: 0x73,
  SETITEMS: 0x75,
  NONE: 0x4e,
  NEWTRUE: 0x88,
  BININT1: 0x4b,
  SHORT_BINUNICODE: 0x8c,
  SHORT_BINBYTES: 0x43,
  BINBYTES: 0x42,
  DUP: 0x32,
  POP: 0x30,
  MEMOIZE: 0x94,
  BINGET: 0x68,
  LONG_BINGET: 0x6a,
  REDUCE: 0x52,
  BINPERSID: 0x51,
  STOP: 0x2e,
} as const;

const GLOBAL = (module: string, name: string) => [0x63, ...new TextEncoder().encode(`${module}\n${name}\n`)];
const str = (s: string) => [OP.SHORT_BINUNICODE, s.length, ...new TextEncoder().encode(s)];
const u32 = (n: number) => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24];

/** `(t, t)` nested `depth` times above `()`, each level the one below twice — through DUP or the memo. */
function tupleDag(depth: number, via: "dup" | "memo"): number[] {
  const out: number[] = [OP.EMPTY_TUPLE];
  if (via === "dup") for (let i = 0; i < depth; i++) out.push(OP.DUP, OP.TUPLE2);
  else {
    out.push(OP.MEMOIZE, OP.POP);
    for (let i = 0; i < depth; i++) out.push(OP.BINGET, i, OP.BINGET, i, OP.TUPLE2, OP.MEMOIZE, OP.POP);
    out.push(OP.BINGET, depth);
  }
  return out;
}

/** A pickle of `{key: None}`. */
const dictWithKey = (key: number[]) =>
  new Uint8Array([...OP.PROTO4, OP.EMPTY_DICT, ...key, OP.NONE, OP.SETITEM, OP.STOP]);

interface ZipSpec {
  readonly name: string;
  readonly data: Uint8Array;
  /** Overrides of what the local header says. */
  readonly localName?: string;
  readonly localCrc?: number;
  /** General-purpose flags of the local header (bit 3: a data descriptor follows the data). */
  readonly flags?: number;
  readonly descriptorCrc?: number;
  /** Overrides of what the central directory says. */
  readonly cdLocalOffset?: number;
  readonly cdSize?: number;
  readonly cdExtra?: readonly number[];
}

/** A STORED zip written field by field, so that each field can lie. */
function zip(members: readonly ZipSpec[]): Uint8Array {
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [];
  let at = 0;
  const put = (...chunks: (readonly number[] | Uint8Array)[]) => {
    for (const c of chunks) {
      parts.push(Uint8Array.from(c));
      at += c.length;
    }
  };
  const offsets: number[] = [];
  for (const m of members) {
    offsets.push(at);
    const crc = crc32(m.data);
    const flags = m.flags ?? 0;
    const described = (flags & 8) !== 0;
    const name = enc.encode(m.localName ?? m.name);
    put(u32(0x04034b50), [20, 0, flags & 0xff, flags >> 8, 0, 0, 0, 0, 0x21, 0]);
    put(u32(described ? 0 : (m.localCrc ?? crc)));
    put(u32(described ? 0 : m.data.length), u32(described ? 0 : m.data.length));
    put([name.length & 0xff, name.length >> 8, 0, 0], name, m.data);
    if (described) put(u32(0x08074b50), u32(m.descriptorCrc ?? crc), u32(m.data.length), u32(m.data.length));
  }
  const cdOffset = at;
  members.forEach((m, i) => {
    const name = enc.encode(m.name);
    const extra = m.cdExtra ?? [];
    const size = m.cdSize ?? m.data.length;
    put(u32(0x02014b50), [20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0x21, 0], u32(crc32(m.data)));
    put(u32(size), u32(size), [name.length & 0xff, name.length >> 8, extra.length, 0]);
    put([0, 0, 0, 0, 0, 0, 0, 0, 0, 0], u32(m.cdLocalOffset ?? offsets[i]!), name, extra);
  });
  const cdSize = at - cdOffset;
  const n = members.length;
  put(u32(0x06054b50), [0, 0, 0, 0, n & 0xff, n >> 8, n & 0xff, n >> 8], u32(cdSize), u32(cdOffset), [0, 0]);
  return new Uint8Array(Buffer.concat(parts));
}

/** `data.pkl` of a float32 tensor of `numel` elements over storage "0", with the given size and stride. */
function tensorPickle(size: number[], stride: number[], numel = 1): number[] {
  const tuple = (xs: number[]) => [OP.MARK, ...xs.flatMap((x) => [0x4a, ...u32(x)]), OP.TUPLE];
  return [
    ...OP.PROTO4,
    ...GLOBAL("torch._utils", "_rebuild_tensor_v2"),
    OP.MARK,
    OP.MARK,
    ...str("storage"),
    ...GLOBAL("torch", "FloatStorage"),
    ...str("0"),
    ...str("cpu"),
    0x4a,
    ...u32(numel),
    OP.TUPLE,
    OP.BINPERSID,
    OP.BININT1,
    0,
    ...tuple(size),
    ...tuple(stride),
    OP.NEWTRUE,
    OP.TUPLE,
    OP.REDUCE,
  ];
}

/** A torch item whose `data.pkl` is `pkl` (a STOP is appended), with `data/0` when given. */
function item(pkl: number[], storage?: Uint8Array): Uint8Array {
  const members: ZipSpec[] = [{ name: "archive/data.pkl", data: new Uint8Array([...pkl, OP.STOP]) }];
  if (storage) members.push({ name: "archive/data/0", data: storage });
  return zip(members);
}

/**
 * A hang guard, not a speed target: a hostile decode is refused by its budget's value, byte or
 * depth count (asserted below), which bound its work whatever the machine's speed; one that
 * expanded exponentially (the failure before the budget) takes minutes.
 */
const HANG_GUARD = { timeout: 30_000 } as const;

/** The heap and array buffers one decode may add: 256 MiB. */
const MEMORY_BOUND = 256 * 2 ** 20;

/** Runs `decode`, which must throw a coded CheckpointError, adding at most {@link MEMORY_BOUND} of heap and array buffers. */
function refused(decode: () => unknown): CheckpointError {
  const before = process.memoryUsage();
  let error: unknown;
  try {
    decode();
  } catch (e) {
    error = e;
  }
  const after = process.memoryUsage();
  expect(error).toBeInstanceOf(CheckpointError);
  expect(after.heapUsed + after.arrayBuffers - before.heapUsed - before.arrayBuffers).toBeLessThan(
    MEMORY_BOUND,
  );
  return error as CheckpointError;
}

/**
 * Runs `decode`, which must be refused by the decode budget's `limit` — the value, byte or depth
 * count, never the clock: the counts bound a hostile input's work on any machine.
 */
function refusedBy(limit: DecodeLimit, decode: () => unknown): DecodeLimitError {
  const error = refused(decode);
  expect(error).toBeInstanceOf(DecodeLimitError);
  expect({ limit: (error as DecodeLimitError).limit, message: error.message }).toMatchObject({ limit });
  expect(error.code).toBe("MALFORMED_METADATA");
  return error as DecodeLimitError;
}

async function loadFailure(metadata: Uint8Array): Promise<CheckpointError> {
  const dir = await tempDir();
  await writeFile(join(dir, METADATA_FILE), metadata);
  const e = await loadStateDictFromKeys({ checkpointId: dir }).then(
    () => undefined,
    (error: unknown) => error,
  );
  const error = e instanceof CheckpointException ? e.failures[0]!.error : e;
  expect(error).toBeInstanceOf(CheckpointError);
  return error as CheckpointError;
}

/** A torch `.metadata` of one float32 tensor "w" of `size`, in one chunk, and its item. */
function torchMetadata(size: number[]): Uint8Array {
  const metadata: Metadata = {
    version: "1.0.0",
    stateDictMetadata: new Map([
      [
        "w",
        {
          type: "tensor",
          properties: { dtype: "float32" },
          size,
          chunks: [{ offsets: size.map(() => 0), sizes: size }],
        },
      ],
    ]),
    plannerData: new Map([["w", ["w"]]]),
    storageData: new Map([
      [
        metadataIndexKey({ fqn: "w", offset: size.map(() => 0) }),
        { relativePath: "__0_0.distcp", offset: 0, length: 1000 },
      ],
    ]),
    storageMeta: { format: "torch" },
  };
  return encodeTorchMetadata(metadata);
}

describe(
  "a pickle's shared references and deep keys are bounded (PyTorch .metadata and items)",
  HANG_GUARD,
  () => {
    it("refuses an 87-byte .metadata whose dict key is (t, t) nested 40 levels through DUP: MALFORMED_METADATA, fast", async () => {
      const bytes = dictWithKey(tupleDag(40, "dup"));
      expect(bytes.byteLength).toBeLessThan(90);
      const error = refusedBy("nodes", () => decodeTorchMetadata(bytes));
      expect(error.message).toMatch(/expected at most \d+ values, the input expands to more/);
      expect((await loadFailure(bytes)).code).toBe("MALFORMED_METADATA");
    });

    it("refuses the same DAG built through the memo (BINGET), as a key and as a torch value item", () => {
      const key = dictWithKey(tupleDag(40, "memo"));
      expect(refusedBy("nodes", () => decodeTorchMetadata(key)).message).toMatch(/the input expands to more/);
      const value = item([...OP.PROTO4, ...tupleDag(40, "memo")]);
      const error = refusedBy("nodes", () =>
        TORCH_ITEM_FORMAT.unframe(
          value,
          { relativePath: "f", offset: 0, length: value.byteLength },
          { kind: "value" },
          "v",
          "f",
        ),
      );
      expect(error.code).toBe("MALFORMED_METADATA");
      expect(error.message).toMatch(/torch item "v" in f: expected at most \d+ values/);
    });

    it("refuses a 1,000,000-deep tuple as a dict key with a coded error naming the depth, not a stack overflow", async () => {
      const deep = new Uint8Array(1_000_000 + 10);
      deep.set([...OP.PROTO4, OP.EMPTY_DICT, OP.EMPTY_TUPLE]);
      deep.fill(OP.TUPLE1, 4, 4 + 1_000_000);
      deep.set([OP.NONE, OP.SETITEM, OP.STOP], 4 + 1_000_000);
      const bytes = deep.subarray(0, 4 + 1_000_000 + 3);
      expect(refusedBy("depth", () => decodeTorchMetadata(bytes)).message).toMatch(
        /expected tuples nested at most 64 deep/,
      );
      expect((await loadFailure(bytes)).message).toMatch(/expected tuples nested at most 64 deep/);
    });

    it("refuses a list or a dict as a dict key (unhashable in Python; turning one into text would expand it)", () => {
      const listKey = dictWithKey([OP.EMPTY_LIST]);
      expect(refused(() => decodeTorchMetadata(listKey)).message).toMatch(/unhashable dict key \(a list\)/);
    });

    it("refuses torch.Size applied again and again to one shared 100,000-element tuple (each copy is counted)", () => {
      const n = 100_000;
      const out: number[] = [...OP.PROTO4, OP.EMPTY_LIST, OP.MARK];
      for (let i = 0; i < n; i++) out.push(OP.NONE);
      out.push(OP.TUPLE, OP.MEMOIZE, OP.POP, ...GLOBAL("torch", "Size"), OP.MEMOIZE, OP.POP, OP.MARK);
      for (let i = 0; i < 50_000; i++) out.push(OP.BINGET, 1, OP.BINGET, 0, OP.TUPLE1, OP.REDUCE);
      out.push(OP.APPENDS, OP.STOP);
      const error = refusedBy("nodes", () => decodeTorchMetadata(new Uint8Array(out)));
      expect(error.message).toMatch(/the input expands to more/);
    });

    it("refuses 100,000 storage_data entries sharing one 1 MiB relative path through the memo (each is checked)", () => {
      const META = "torch.distributed.checkpoint.metadata";
      const setState = (...pairs: number[][]) => [OP.EMPTY_DICT, OP.MARK, ...pairs.flat(), OP.SETITEMS];
      const newObj = (module: string, name: string) => [...GLOBAL(module, name), OP.EMPTY_TUPLE, 0x81];
      const head = [
        ...OP.PROTO4,
        ...newObj(META, "Metadata"),
        OP.EMPTY_DICT,
        ...str("state_dict_metadata"),
        OP.EMPTY_DICT,
        OP.SETITEM,
        ...str("storage_data"),
        OP.EMPTY_DICT,
        OP.MARK,
        ...GLOBAL(META, "MetadataIndex"),
        OP.MEMOIZE, // memo 0: the class
        OP.EMPTY_TUPLE,
        0x81,
        ...setState(str("fqn"), str("w")),
        OP.MEMOIZE, // memo 1: the key's state
        0x62, // BUILD
        ...newObj("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
        OP.EMPTY_DICT,
        OP.MARK,
        ...str("relative_path"),
        0x58,
        ...u32(2 ** 20),
      ];
      const tail = [
        ...str("offset"),
        OP.BININT1,
        0,
        ...str("length"),
        OP.BININT1,
        0,
        OP.SETITEMS,
        0x62,
        OP.MEMOIZE, // memo 2: the storage record
      ];
      for (let i = 0; i < 100_000; i++)
        tail.push(OP.BINGET, 0, OP.EMPTY_TUPLE, 0x81, OP.BINGET, 1, 0x62, OP.BINGET, 2);
      tail.push(OP.SETITEMS, OP.SETITEM, 0x62, OP.STOP);
      const bytes = Buffer.concat([
        Uint8Array.from(head),
        new Uint8Array(2 ** 20).fill(0x61),
        Uint8Array.from(tail),
      ]);
      const error = refusedBy("bytes", () => decodeTorchMetadata(bytes));
      expect(error.message).toMatch(/expected at most \d+ bytes of decoded data/);
    });

    it("refuses a value that shares one 1 MiB bytes object 1,000 times (1 GiB once expanded)", () => {
      const head = [...OP.PROTO4, OP.EMPTY_LIST, OP.BINBYTES, ...u32(2 ** 20)];
      const tail: number[] = [OP.MEMOIZE, OP.APPEND, OP.MARK];
      for (let i = 0; i < 1000; i++) tail.push(OP.BINGET, 0);
      tail.push(OP.APPENDS, OP.STOP);
      const data = Buffer.concat([Uint8Array.from(head), new Uint8Array(2 ** 20), Uint8Array.from(tail)]);
      const value = zip([{ name: "archive/data.pkl", data }]);
      const error = refusedBy("bytes", () =>
        TORCH_ITEM_FORMAT.unframe(
          value,
          { relativePath: "f", offset: 0, length: value.byteLength },
          { kind: "value" },
          "v",
          "f",
        ),
      );
      expect(error.message).toMatch(/expected at most \d+ bytes of decoded data/);
    });

    it("refuses a value holding a tensor view of one element repeated 2^28 times by a zero stride", () => {
      const pkl = [...OP.PROTO4, OP.EMPTY_LIST, ...tensorPickle([2 ** 28], [0]).slice(2), OP.APPEND];
      const error = refusedBy("bytes", () => decodeTorchItem(item(pkl, new Uint8Array(4)), "v", "f"));
      expect(error.message).toMatch(/expected at most \d+ bytes of decoded data/);
    });

    it("a declared [2^40, 2^40] tensor is MALFORMED_METADATA; a [2^24, 2^24] one fails to allocate as INVALID_ARGUMENT naming the fqn", async () => {
      const huge = await loadFailure(torchMetadata([2 ** 40, 2 ** 40]));
      expect(huge.code).toBe("MALFORMED_METADATA");
      expect(huge.message).toMatch(
        /"w" of size \[1099511627776, 1099511627776\] has more bytes than a safe integer/,
      );
      const large = await loadFailure(torchMetadata([2 ** 24, 2 ** 24]));
      expect(large.code).toBe("INVALID_ARGUMENT");
      expect(large.message).toMatch(/Expected "w" \(float32 \[16777216, 16777216\]\) to fit in memory/);
    });

    it("refuses a zstd item of 4,000 RLE blocks (16 KB declaring 500 MiB) before decompressing it", () => {
      const frame: number[] = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38]; // no content size, 128 KiB window
      for (let i = 0; i < 4000; i++) {
        const header = ((128 * 1024) << 3) | (1 << 1) | (i === 3999 ? 1 : 0); // RLE, 128 KiB
        frame.push(header & 0xff, (header >> 8) & 0xff, header >> 16, 0x41);
      }
      const error = refusedBy("bytes", () => unzstd(new Uint8Array(frame), "v", "f"));
      expect(error.message).toMatch(/expected at most \d+ bytes of decoded data/);
    });
  },
);

describe("torch zips that two readers could read differently are refused (MALFORMED_METADATA)", () => {
  const pkl = tensorPickle([1], [1]);
  const storage = new Float32Array([1.5]);
  const other = new Float32Array([-2]);
  const bytes = (a: Float32Array) => new Uint8Array(a.buffer);
  const decode = (z: Uint8Array) => refused(() => decodeTorchItem(z, "w", "f"));

  it("reads the honest archive", () => {
    const t = decodeTorchItem(item(pkl, bytes(storage)), "w", "f");
    expect(t.kind === "tensor" && new Float32Array(t.bytes.slice().buffer)[0]).toBe(1.5);
  });

  it("refuses archive/data/0 listed twice, both CRCs valid (readers taking the first or the last see other data)", () => {
    const z = zip([
      { name: "archive/data.pkl", data: new Uint8Array([...pkl, OP.STOP]) },
      { name: "archive/data/0", data: bytes(storage) },
      { name: "archive/data/0", data: bytes(other) },
    ]);
    const error = decode(z);
    expect(error.code).toBe("MALFORMED_METADATA");
    expect(error.message).toMatch(/member archive\/data\/0 appears twice/);
  });

  it("refuses a member outside the archive's folder (torch reads the first member's folder only)", () => {
    const other = zip([
      { name: "archive/data.pkl", data: new Uint8Array([...pkl, OP.STOP]) },
      { name: "elsewhere/data/0", data: bytes(storage) },
    ]);
    expect(decode(other).message).toMatch(/lies outside the archive's folder archive\//);
  });

  it("refuses overlapping members: one whose record lies inside another's data, its local header intact", () => {
    const a = new Uint8Array([...pkl, OP.STOP]);
    // data/0's whole local record (header and data), carried as the data of archive/pad.
    const record = zip([{ name: "archive/data/0", data: bytes(storage) }]).subarray(0, 30 + 14 + 4);
    const z = zip([
      { name: "archive/data.pkl", data: a },
      { name: "archive/pad", data: record },
      { name: "archive/data/0", data: bytes(storage), cdLocalOffset: 30 + 16 + a.length + 30 + 11 },
    ]);
    const error = decode(z);
    expect(error.code).toBe("MALFORMED_METADATA");
    expect(error.message).toMatch(/members archive\/pad and archive\/data\/0 overlap/);
  });

  it("refuses a central directory that disagrees with the local header: name, CRC-32, data descriptor", () => {
    const named = zip([
      { name: "archive/data.pkl", data: new Uint8Array([...pkl, OP.STOP]) },
      { name: "archive/data/0", localName: "archive/data/1", data: bytes(storage) },
    ]);
    expect(decode(named).message).toMatch(/the local header of archive\/data\/0 names "archive\/data\/1"/);
    const crc = zip([
      { name: "archive/data.pkl", data: new Uint8Array([...pkl, OP.STOP]) },
      { name: "archive/data/0", localCrc: 1234, data: bytes(storage) },
    ]);
    expect(decode(crc).message).toMatch(/disagrees with the central directory/);
    const descriptor = zip([
      { name: "archive/data.pkl", data: new Uint8Array([...pkl, OP.STOP]), flags: 0x808 },
      { name: "archive/data/0", data: bytes(storage), flags: 0x808, descriptorCrc: 99 },
    ]);
    expect(decode(descriptor).message).toMatch(/the data descriptor of archive\/data\/0 says CRC-32 99/);
    const described = zip([
      { name: "archive/data.pkl", data: new Uint8Array([...pkl, OP.STOP]), flags: 0x808 },
      { name: "archive/data/0", data: bytes(storage), flags: 0x808 },
    ]);
    expect(decodeTorchItem(described, "w", "f").kind).toBe("tensor"); // as torch writes them
  });

  it("refuses a zip64 extra field that would be read past its own length or the item, with a code", () => {
    const z = zip([
      { name: "archive/data.pkl", data: new Uint8Array([...pkl, OP.STOP]) },
      // Sizes and offset all in a zip64 field of no bytes: 24 bytes read past it, past the item's end.
      {
        name: "archive/data/0",
        data: bytes(storage),
        cdSize: 0xffffffff,
        cdLocalOffset: 0xffffffff,
        cdExtra: [0x01, 0x00, 0x00, 0x00],
      },
    ]);
    const error = decode(z);
    expect(error.code).toBe("MALFORMED_METADATA");
    expect(error.message).toMatch(/zip64 field too short for its size/);
    const past = zip([
      { name: "archive/data.pkl", data: new Uint8Array([...pkl, OP.STOP]) },
      { name: "archive/data/0", data: bytes(storage), cdSize: 0xffffffff, cdExtra: [0x01, 0x00, 0xff, 0xff] },
    ]);
    expect(decode(past).message).toMatch(/an extra field longer than its extra bytes/);
  });

  it("refuses bytes after the end record and a central directory of another size than its end record says", () => {
    const z = item(pkl, bytes(storage));
    expect(decode(new Uint8Array([...z, 0])).message).toMatch(
      /expected the end of central directory to end the archive/,
    );
  });
});

describe("safetensors headers are decoded within the budget", HANG_GUARD, () => {
  it("refuses JSON nested 100,000 deep before parsing it", () => {
    const json = new TextEncoder().encode(`{"a":${"[".repeat(100_000)}${"]".repeat(100_000)}}`);
    const error = refusedBy("depth", () =>
      parseSafetensorsHeader(json, 8 + json.byteLength, "m.safetensors"),
    );
    expect(error.message).toMatch(/m\.safetensors: expected nesting at most 64 deep/);
  });
});

// ---- Fuzzing: fixed seed, fixed run count, every outcome a success or a coded CheckpointError ----

/** Pieces of pickles: scalars, containers, memo sharing, deep tuples, DAGs, allowlisted globals. */
const pickleOp: fc.Arbitrary<number[]> = fc.oneof(
  fc.constantFrom(
    [OP.NONE],
    [OP.NEWTRUE],
    [OP.EMPTY_TUPLE],
    [OP.EMPTY_LIST],
    [OP.EMPTY_DICT],
    [OP.MARK],
    [OP.TUPLE],
    [OP.TUPLE1],
    [OP.TUPLE2],
    [OP.TUPLE3],
    [OP.LIST],
    [OP.DICT],
    [OP.APPEND],
    [OP.APPENDS],
    [OP.SETITEM],
    [OP.SETITEMS],
    [OP.DUP],
    [OP.POP],
    [OP.MEMOIZE],
    [OP.REDUCE],
    [OP.BINPERSID],
    [OP.STOP],
    GLOBAL("torch", "Size"),
    GLOBAL("collections", "OrderedDict"),
    GLOBAL("torch._utils", "_rebuild_tensor_v2"),
    GLOBAL("torch", "FloatStorage"),
    GLOBAL("pathlib", "PurePosixPath"),
    GLOBAL("torch.distributed.checkpoint.metadata", "Metadata"),
  ),
  fc.nat(255).map((n) => [OP.BININT1, n]),
  fc.nat(8).map((i) => [OP.BINGET, i]),
  fc.string({ maxLength: 12 }).map((s) => str(s.slice(0, 12).replace(/[^\x20-\x7e]/g, "x"))),
  fc.uint8Array({ maxLength: 16 }).map((b) => [OP.SHORT_BINBYTES, b.length, ...b]),
  fc.integer({ min: 1, max: 200_000 }).map((n) => new Array<number>(n).fill(OP.TUPLE1)),
  fc.integer({ min: 1, max: 60 }).map((n) => tupleDag(n, "dup").slice(1)),
  fc.integer({ min: 1, max: 60 }).map((n) => tupleDag(Math.min(n, 250), "memo")),
);

const picklesArb = fc
  .array(pickleOp, { minLength: 1, maxLength: 40 })
  .map((ops) => new Uint8Array([...OP.PROTO4, ...ops.flat(), OP.STOP]));

/**
 * Every outcome: a value, or a coded CheckpointError, adding at most 256 MiB — and a refusal by the
 * decode budget is by its value, byte or depth count, never its clock (whose 10 s floor only a
 * decode the counts failed to bound would reach).
 */
function bounded(decode: () => unknown): void {
  const before = process.memoryUsage();
  try {
    decode();
  } catch (error) {
    if (!(error instanceof CheckpointError)) throw error;
    expect(typeof error.code).toBe("string");
    if (error instanceof DecodeLimitError) expect(error.limit).not.toBe("time");
  }
  const after = process.memoryUsage();
  expect(after.heapUsed + after.arrayBuffers - before.heapUsed - before.arrayBuffers).toBeLessThan(
    MEMORY_BOUND,
  );
}

/**
 * Fixed seed and a fixed number of runs, so every machine runs the same cases (no wall-clock
 * cut-off: a slow machine runs them all, just slower). Sized to take a few seconds here.
 */
const fuzz = (numRuns: number) => ({ seed: 21, numRuns }) as const;

describe(
  "fuzzed pickles, zips and safetensors headers give a value or a coded error, within the bounds",
  HANG_GUARD,
  () => {
    it("pickles with memo sharing, deep tuples and DAGs, as .metadata and as torch value items", () => {
      fc.assert(
        fc.property(picklesArb, (pkl) => {
          bounded(() => decodeTorchMetadata(pkl));
          bounded(() => decodeTorchItem(zip([{ name: "archive/data.pkl", data: pkl }]), "v", "f"));
        }),
        fuzz(150),
      );
    });

    it("zips with duplicate and overlapping members, lying local headers and zip64 fields", () => {
      const names = fc.constantFrom(
        "archive/data.pkl",
        "archive/data/0",
        "archive/data/1",
        "other/data/0",
        "data.pkl",
      );
      const member: fc.Arbitrary<ZipSpec> = fc.record(
        {
          name: names,
          data: fc.oneof(
            fc.uint8Array({ maxLength: 32 }),
            fc.constant(new Uint8Array([...tensorPickle([2], [1], 2), OP.STOP])),
          ),
          localName: names,
          localCrc: fc.nat(),
          flags: fc.constantFrom(0, 0x808),
          descriptorCrc: fc.nat(),
          cdLocalOffset: fc.nat(200),
          cdSize: fc.constantFrom(0, 4, 8, 0xffffffff),
          cdExtra: fc.oneof(
            fc.uint8Array({ maxLength: 28 }).map((b) => [...b]),
            fc
              .tuple(fc.nat(40), fc.array(fc.nat(255), { maxLength: 24 }))
              .map(([len, body]) => [0x01, 0x00, len, 0x00, ...body]),
          ),
        },
        { requiredKeys: ["name", "data"] },
      );
      fc.assert(
        fc.property(
          fc.array(member, { minLength: 1, maxLength: 5 }),
          fc.nat(400),
          fc.nat(255),
          (members, at, byte) => {
            const z = zip(members);
            bounded(() => decodeTorchItem(z, "w", "f"));
            // A member name listed twice is never accepted, whichever copy a reader would take.
            if (new Set(members.map((m) => m.name)).size < members.length)
              expect(() => decodeTorchItem(z, "w", "f")).toThrow(CheckpointError);
            const damaged = new Uint8Array(z);
            damaged[at % damaged.length] = byte;
            bounded(() => decodeTorchItem(damaged, "w", "f"));
          },
        ),
        fuzz(2000),
      );
    });

    it("safetensors headers: random JSON, deep nesting and structured entries with lying offsets", () => {
      const entry = fc.record({
        dtype: fc.constantFrom("F32", "I8", "BF16", "F8_E4M3", "X", 3),
        shape: fc.array(fc.nat(4), { maxLength: 3 }),
        data_offsets: fc.tuple(fc.nat(64), fc.nat(64)),
      });
      const header = fc.oneof(
        fc
          .dictionary(fc.string({ maxLength: 6 }), fc.oneof(entry, fc.jsonValue({ maxDepth: 3 })))
          .map((o) => JSON.stringify(o)),
        fc.json({ maxDepth: 4 }),
        fc.integer({ min: 1, max: 100_000 }).map((n) => `{"a":${"[".repeat(n)}${"]".repeat(n)}}`),
      );
      fc.assert(
        fc.property(header, fc.nat(128), (text, extra) => {
          const json = new TextEncoder().encode(text);
          bounded(() => parseSafetensorsHeader(json, 8 + json.byteLength + extra, "m.safetensors"));
        }),
        fuzz(1000),
      );
    });
  },
);

describe("the decode budget", () => {
  it("has the documented limits and refuses past its deadline, whatever is left of its counts", () => {
    expect(decodeLimits(4096)).toEqual({
      nodes: 2 ** 18 + 4 * 4096,
      bytes: 64 * 2 ** 20 + 2 * 4096,
      ms: 10_004,
      depth: 64,
    });
    // A deadline already passed at the budget's creation: the first look at the clock refuses.
    const budget = new DecodeBudget("x", 10, { nodes: 1e9, bytes: 1e9, ms: -1, depth: 64 });
    let error: unknown;
    try {
      for (let i = 0; i < 10_000; i++) budget.nodes();
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(DecodeLimitError);
    expect(error).toMatchObject({
      limit: "time",
      code: "MALFORMED_METADATA",
      message: "Malformed x: expected to decode within -1 ms, it takes longer",
    });
    expect(new MetadataError("x")).toBeInstanceOf(CheckpointError); // the fuzz oracle
  });

  it("gives honest large .metadata files what they need, with room to spare: 100,000 entries (dcpjs), 10,000 (PyTorch)", () => {
    /** `n` tensors of 4 × 8 float32 in one file, as a model of `n` layers saves them. */
    const honest = (n: number, format?: string): Metadata => {
      const metadata = {
        version: "1.0.0",
        stateDictMetadata: new Map(),
        plannerData: new Map(),
        storageData: new Map(),
        storageMeta: format ? { format } : {},
      } satisfies Metadata;
      for (let i = 0; i < n; i++) {
        const fqn = `model.layers.${i}.weight`;
        metadata.stateDictMetadata.set(fqn, {
          type: "tensor",
          properties: { dtype: "float32" },
          size: [4, 8],
          chunks: [{ offsets: [0, 0], sizes: [4, 8] }],
        });
        metadata.plannerData.set(fqn, ["model", "layers", String(i), "weight"]);
        metadata.storageData.set(metadataIndexKey({ fqn, offset: [0, 0] }), {
          relativePath: "__0_0.distcp",
          offset: i * 128,
          length: 128,
          crc32: i,
        });
      }
      return metadata;
    };
    const dcpjs = encodeMetadata(honest(100_000));
    expect(decodeCheckpointMetadata(dcpjs).stateDictMetadata.size).toBe(100_000);
    // PyTorch's pickle is the costliest to decode (10,000 entries: 8 MB).
    const torch = encodeTorchMetadata(honest(10_000, "torch"));
    const budget = new DecodeBudget(".metadata (PyTorch DCP)", torch.byteLength);
    expect(decodeTorchMetadata(torch, budget).stateDictMetadata.size).toBe(10_000);
    // The counts leave an honest file at least half of each bound, and the clock's backstop is
    // 10 s plus 1 s per MiB: a slow or CPU-starved process still decodes it.
    expect(budget.nodesUsed).toBeLessThan(budget.limits.nodes / 2);
    expect(budget.bytesUsed).toBeLessThan(budget.limits.bytes / 2);
    expect(budget.limits.ms).toBeGreaterThanOrEqual(10_000 + (1000 * torch.byteLength) / 2 ** 20);
  });

  it("is the one msgpack's walk charges: a value per element, the bytes of each string", () => {
    const limits = { nodes: 10, bytes: 100, ms: 60_000, depth: 64 };
    const many = encode(new Array(20).fill(0));
    expect(() => assertMsgpackWithinLimits(many, "v", new DecodeBudget("v", 0, limits))).toThrow(
      /Malformed v: expected at most 10 values/,
    );
    const long = encode(["x".repeat(200)]);
    expect(() => assertMsgpackWithinLimits(long, "v", new DecodeBudget("v", 0, limits))).toThrow(
      /Malformed v: expected at most 100 bytes of decoded data/,
    );
    expect(() =>
      assertMsgpackWithinLimits(encode([1, "ab"]), "v", new DecodeBudget("v", 0, limits)),
    ).not.toThrow();
  });
});
