// A sharded safetensors repository served as the Hub serves one (resolve → CDN redirect,
// X-Repo-Commit), loaded with hf:// in a page into a TF.js model: the bf16 and fp16 tensors cast
// to float32 on load; the model's output is the one its float32 weights give.
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { call, type HttpPage, openHttpPage } from "./http-page.js";

const COMMIT = "0123456789abcdef0123456789abcdef01234567";
/** The model's weights: Dense(16→8), Dense(8→4); names, shapes, stored dtypes, and shards. */
const WEIGHTS = [
  { name: "dense.0.kernel", shape: [16, 8], dtype: "BF16", shard: 1 },
  { name: "dense.0.bias", shape: [8], dtype: "F16", shard: 1 },
  { name: "dense.1.kernel", shape: [8, 4], dtype: "F16", shard: 2 },
  { name: "dense.1.bias", shape: [4], dtype: "BF16", shard: 2 },
] as const;

/** Element `j` of weight `i`: multiples of 1/8 in [-1, 1], exact in bf16 and fp16. */
const valueAt = (i: number, j: number) => (((j * 7 + i * 3) % 17) - 8) / 8;

/** The IEEE half (fp16) bits of a value exact in it (normal or zero). */
function halfBits(v: number): number {
  if (v === 0) return 0;
  const f = new DataView(new ArrayBuffer(4));
  f.setFloat32(0, v, true);
  const bits = f.getUint32(0, true);
  return ((bits >>> 16) & 0x8000) | ((((bits >>> 23) & 0xff) - 127 + 15) << 10) | ((bits >>> 13) & 0x3ff);
}

/** Writes `model-0000k-of-00002.safetensors` and `model.safetensors.index.json` under `dir`. */
async function writeRepo(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const weightMap: Record<string, string> = {};
  for (const shard of [1, 2]) {
    const file = `model-0000${shard}-of-00002.safetensors`;
    const header: Record<string, unknown> = {};
    const parts: Uint8Array[] = [];
    let at = 0;
    WEIGHTS.forEach((w, i) => {
      if (w.shard !== shard) return;
      const n = w.shape.reduce((a, b) => a * b, 1);
      const bits = new Uint16Array(n);
      const f32 = new Float32Array(1);
      const u32 = new Uint32Array(f32.buffer);
      for (let j = 0; j < n; j++) {
        f32[0] = valueAt(i, j);
        bits[j] = w.dtype === "BF16" ? u32[0]! >>> 16 : halfBits(valueAt(i, j));
      }
      header[w.name] = { dtype: w.dtype, shape: w.shape, data_offsets: [at, at + bits.byteLength] };
      parts.push(new Uint8Array(bits.buffer));
      at += bits.byteLength;
      weightMap[w.name] = file;
    });
    const json = new TextEncoder().encode(JSON.stringify(header));
    const length = new Uint8Array(8);
    new DataView(length.buffer).setBigUint64(0, BigInt(json.byteLength), true);
    await writeFile(join(dir, file), Buffer.concat([length, json, ...parts]));
  }
  await writeFile(
    join(dir, "model.safetensors.index.json"),
    JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }),
  );
}

/** The model's output for `input`, in float64 from the exact weights. */
function expectedOutput(input: readonly number[]): number[] {
  const w = (i: number) => (j: number) => valueAt(i, j);
  const hidden = Array.from({ length: 8 }, (_, o) => {
    let s = w(1)(o);
    for (let k = 0; k < 16; k++) s += input[k]! * w(0)(k * 8 + o);
    return s;
  });
  return Array.from({ length: 4 }, (_, o) => {
    let s = w(3)(o);
    for (let k = 0; k < 8; k++) s += hidden[k]! * w(2)(k * 4 + o);
    return s;
  });
}

let root: string;
let http: HttpPage;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dcpjs-http-tfjs-"));
  await writeRepo(join(root, "dcpjs-test", "tiny-tf"));
  http = await openHttpPage(root, { tfjs: true, hubCommit: COMMIT });
}, 120_000);
afterAll(async () => {
  await http?.close();
  await rm(root, { recursive: true, force: true });
});

it("loads a sharded bf16/fp16 safetensors repository over hf:// into a TF.js model in the page, cast to float32", async () => {
  const { page, server } = http;
  const input = Array.from({ length: 16 }, (_, k) => (k % 5) - 2);
  const result = await call(
    page,
    "tfModel",
    "hf://dcpjs-test/tiny-tf",
    server.origin,
    WEIGHTS.map((w) => w.name),
    WEIGHTS.map((w) => [...w.shape]),
    input,
  );
  expect(result.error).toBeUndefined();
  const want = expectedOutput(input);
  expect(result.output).toHaveLength(4);
  for (const [i, v] of result.output!.entries()) expect(v).toBeCloseTo(want[i]!, 4);
  // every shard read at the pinned commit's CDN path, with ranges
  const shards = server.requests.filter((r) => r.path.includes(".safetensors") && r.path.startsWith("/cdn/"));
  expect(shards.length).toBeGreaterThan(0);
  expect(shards.every((r) => r.headers.range !== undefined)).toBe(true);
});
