import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  createLocalProcessGroups,
  type DType,
  emptyTensor,
  load,
  numel,
  QuantizedHuggingFaceStorageReader,
  type StateDict,
  save,
  shardTensor,
  type Tensor,
  tensor,
} from "@dcpjs/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runPeer, torchPython } from "../support/python-peer.js";
import { hexOf } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

type Expected = Record<string, { dtype: string; shape: number[]; hex: string }>;

const QUANTIZED = [
  "model.layers.0.mlp.up_proj.weight", // [300, 200]: NaN, inf, huge, subnormal and negative scales
  "model.layers.0.self_attn.o_proj.weight", // [256, 384]: its scales in the other file
  "model.layers.1.mlp.down_proj.weight", // [130, 129]: bfloat16 scales
  "model.layers.1.mlp.gate_proj.weight", // [1100, 1000]: cast to float32 on worker threads (≥ 1 MiB)
];

/** The checkpoint torch's safetensors writes, shared by the tests of this file (tempDir's go after each test). */
/** The weight with a NaN scale (block [0, 1]), some of whose weights are NaN too. */
const NAN_SCALED = QUANTIZED[0];
/** Its NaN-scale block, [0, 1] of 128 × 128. */
const nanBlock = (fqn: string) =>
  fqn === NAN_SCALED ? (row: number, col: number) => row < 128 && col >= 128 && col < 256 : undefined;

let root: string;
let dir: string;

beforeAll(async () => {
  await torchPython();
  root = await mkdtemp(join(tmpdir(), "dcpjs-fp8-"));
  dir = join(root, "fp8");
  await runPeer("fp8_dequant_peer.py", ["write", dir]);
}, 600_000);

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** torch 2.13's QuantizedHuggingFaceStorageReader result: every tensor of the folder, loaded into `dest` zeros. */
async function torchRead(targetDtype: DType, dest: DType): Promise<Expected> {
  const out = join(await tempDir(), "torch.json");
  await runPeer("fp8_dequant_peer.py", ["read", dir, out, targetDtype, dest]);
  return JSON.parse(await readFile(out, "utf8")) as Expected;
}

/** A dcpjs tensor holding torch's result (to slice rank pieces out of). */
function fromHex(e: Expected[string]): Tensor {
  const t = tensor(e.dtype as DType, e.shape);
  new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength).set(Buffer.from(e.hex, "hex"));
  return t;
}

/**
 * Where two tensors' bytes differ (the first element and how many), or "same": a readable failure
 * for 60 000-element tensors. Two float32 NaNs of different payloads count as the same only inside
 * the NaN-scale block of {@link NAN_SCALED} (`inNaNBlock(row, col)` of the whole tensor, `at` the
 * piece's offsets): where a NaN weight meets a NaN scale, torch's result is the scale's NaN in its
 * vectorized loop and the weight's in the scalar remainder of a row, which depends on the CPU torch
 * ran on (AVX2 or AVX-512); dcpjs gives the scale's (docs/format.md).
 */
function difference(
  got: Tensor,
  want: Tensor,
  inNaNBlock?: (row: number, col: number) => boolean,
  at: readonly number[] = [0, 0],
): string {
  const a = hexOf(got);
  const b = hexOf(want);
  const isNaN32 = (hex: string) => hex.length === 8 && Number.isNaN(Buffer.from(hex, "hex").readFloatLE(0));
  if (got.dtype !== want.dtype || a.length !== b.length)
    return `${got.dtype} ${a.length} vs ${want.dtype} ${b.length}`;
  const width = (a.length / Math.max(1, numel(got.shape))) | 0;
  let first = -1;
  let count = 0;
  for (let i = 0; i < a.length; i += width)
    if (
      a.slice(i, i + width) !== b.slice(i, i + width) &&
      !(
        inNaNBlock?.(
          at[0]! + Math.floor(i / width / got.shape[1]!),
          at[1]! + ((i / width) % got.shape[1]!),
        ) &&
        isNaN32(a.slice(i, i + width)) &&
        isNaN32(b.slice(i, i + width))
      )
    ) {
      if (first < 0) first = i;
      count++;
    }
  return first < 0
    ? "same"
    : `${count} elements differ, the first at ${first / width} (shape [${got.shape.join(", ")}]): ${a.slice(first, first + width)} vs ${b.slice(first, first + width)}`;
}

describe("QuantizedHuggingFaceStorageReader: block-scaled FP8 safetensors load dequantized, as torch 2.13's reader", () => {
  it.each([
    ["float32", "float32"],
    ["float32", "bfloat16"],
    ["bfloat16", "float32"],
  ] as const)(
    "targetDtype %s into %s targets: every tensor's bytes equal torch's",
    async (targetDtype, dest) => {
      const expected = await torchRead(targetDtype, dest);
      const reader = new QuantizedHuggingFaceStorageReader({ path: dir, targetDtype });
      const md = await reader.readMetadata();
      expect([...reader.quantizedWeights.keys()].sort()).toEqual(QUANTIZED);
      const sd: StateDict = {};
      for (const [fqn, entry] of md.stateDictMetadata)
        if (entry.type === "tensor") sd[fqn] = emptyTensor(dest, entry.size);
      expect(Object.keys(sd).sort()).toEqual(Object.keys(expected).sort());
      await load(sd, { storageReader: reader });
      for (const [fqn, e] of Object.entries(expected)) {
        const t = sd[fqn] as Tensor;
        expect({ fqn, shape: [...t.shape], bytes: difference(t, fromHex(e), nanBlock(fqn)) }).toEqual({
          fqn,
          shape: e.shape,
          bytes: "same",
        });
      }
    },
  );

  it.each([0, 1])(
    "2 ranks, each its dim-%i shard of every weight (blocks cut mid-way): the slices of torch's whole result",
    async (dim) => {
      const expected = await torchRead("float32", "float32");
      await Promise.all(
        createLocalProcessGroups(2).map(async (pg) => {
          const sd: StateDict = {};
          for (const fqn of QUANTIZED)
            sd[fqn] = shardTensor(emptyTensor("float32", expected[fqn]!.shape), {
              dim,
              rank: pg.rank,
              worldSize: 2,
            });
          await load(sd, {
            storageReader: new QuantizedHuggingFaceStorageReader({ path: dir }),
            processGroup: pg,
          });
          for (const fqn of QUANTIZED) {
            const want = shardTensor(fromHex(expected[fqn]!), { dim, rank: pg.rank, worldSize: 2 });
            const got = (sd[fqn] as ReturnType<typeof shardTensor>).shards[0]!.tensor;
            expect({
              fqn,
              rank: pg.rank,
              bytes: difference(got, want.shards[0]!.tensor, nanBlock(fqn), want.shards[0]!.offsets),
            }).toEqual({
              fqn,
              rank: pg.rank,
              bytes: "same",
            });
          }
        }),
      );
    },
  );

  it("refuses a quantized weight that is not 2-D, and scales that do not cover its blocks, with UNSUPPORTED_DTYPE naming them", async () => {
    const bad = join(await tempDir(), "bad");
    await save(
      {
        "a.weight": tensor("float8_e4m3fn", [4]),
        "a.weight_scale_inv": tensor("float32", [1, 1]),
        "b.weight": tensor("float8_e4m3fn", [3, 5]),
        "b.weight_scale_inv": tensor("float32", [1, 1]),
      },
      { checkpointId: bad },
    );
    const reader = () => new QuantizedHuggingFaceStorageReader({ path: bad, blockSize: 4 });
    await expect(
      load({ "a.weight": emptyTensor("float32", [4]) }, { storageReader: reader() }),
    ).rejects.toMatchObject({
      code: "UNSUPPORTED_DTYPE",
      message: expect.stringMatching(/"a\.weight" to be 2-D/),
    });
    await expect(
      load({ "b.weight": emptyTensor("float32", [3, 5]) }, { storageReader: reader() }),
    ).rejects.toMatchObject({
      code: "UNSUPPORTED_DTYPE",
      message: expect.stringMatching(
        /"b\.weight_scale_inv" of "b\.weight" \[3, 5\].*at least \[1, 2\], got \[1, 1\]/,
      ),
    });
  });
});
