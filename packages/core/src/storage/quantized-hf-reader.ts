/**
 * The dequantizing reader of block-scaled FP8 Hugging Face checkpoints, as torch 2.13's
 * `QuantizedHuggingFaceStorageReader` (torch/distributed/checkpoint/quantized_hf_storage.py).
 */

import { CheckpointError } from "../errors.js";
import { boxCast, castBox } from "../model/cast.js";
import type { DType } from "../model/dtype.js";
import { emptyTensor, type Tensor, tensorBytes } from "../model/tensor.js";
import type { LoadPlan, Metadata, ReadItem, TensorStorageMetadata } from "../plan/metadata.js";
import type { LoadPlanner } from "../plan/planner.js";
import { assertIntegerInRange } from "../validate.js";
import { FileSystemReader, type FileSystemReaderOptions } from "./filesystem-reader.js";

/** The suffix of a weight's block scales (multipliers), e.g. `model.layers.0.mlp.up_proj.weight_scale_inv`. */
export const WEIGHT_SCALE_INV_SUFFIX = ".weight_scale_inv";

/** Options of {@link QuantizedHuggingFaceStorageReader}: those of {@link FileSystemReader}, and the dequantization's. */
export interface QuantizedHuggingFaceStorageReaderOptions extends FileSystemReaderOptions {
  /**
   * The dtype each dequantized block is rounded to (from its float32 product), before it is cast
   * into the target tensor: torch's `target_dtype`. @default "float32"
   */
  readonly targetDtype?: DType;
  /** The side of a square scale block, in elements: torch's `block_size`. @default 128 */
  readonly blockSize?: number;
}

/** A float32 tensor whose (zeroed, shared) memory is allocated when its `data` is first used. */
function lazyFloat32(shape: readonly number[]): Tensor {
  let data: Float32Array | undefined;
  return {
    dtype: "float32",
    shape: [...shape],
    get data(): Float32Array {
      data ??= emptyTensor("float32", shape).data;
      return data;
    },
  };
}

/** A weight's scales, decoded to float32 (their bits kept for NaNs), and their grid. */
interface Scales {
  readonly fqn: string;
  readonly values: Float32Array;
  readonly bits: Uint32Array;
  readonly rows: number;
  readonly cols: number;
}

/**
 * Reads a Hugging Face checkpoint whose 2-D weights are stored block-quantized — `X.weight` (e.g.
 * `float8_e4m3fn`) with `X.weight_scale_inv`, one float32 multiplier per 128×128 block (shape
 * `[ceil(rows / 128), ceil(cols / 128)]`), as DeepSeek-V3 and most FP8 releases — and loads each
 * such weight dequantized, as torch 2.13's `QuantizedHuggingFaceStorageReader`:
 *
 * - a weight is dequantized when the checkpoint holds `X.weight_scale_inv` for its `X.weight`
 *   (whatever the weight's dtype); every other tensor, the scales included, loads as
 *   {@link FileSystemReader} loads it (the scales stay in the metadata and load as saved when the
 *   state dict asks for them);
 * - each element is its weight converted to float32, times its block's scale converted to float32,
 *   rounded once to float32 (torch's `weight.to(float32) * scale`); that product is rounded to
 *   `targetDtype` and then cast into the target tensor (`target.copy_`), so a `float32` target
 *   receives the float32 product and a `bfloat16` one its round-to-nearest-even; NaNs are torch's
 *   on x86-64 (a NaN scale's, else the weight's, else `0xffc00000` for `inf × 0`);
 * - any box of the weight loads (resharding: a rank's rows or columns), each element with the
 *   scale of its block in the whole tensor — where torch 2.13 requires the weight in one file,
 *   this reader also takes one split over files (`DCP_SHARDING_INFO`).
 *
 * Differences from torch's reader: the pairs come from the checkpoint's metadata (every tensor of
 * the folder) rather than only from `model.safetensors.index.json`, so a single
 * `model.safetensors` works too; MXFP4 (`_blocks` / `_scales`) is not dequantized. It reads any
 * checkpoint {@link FileSystemReader} reads (a dcpjs or torch DCP checkpoint as well). `load`'s
 * `strictDtype` refuses an FP8 weight for a float32 target before this reader sees it: leave it
 * unset.
 *
 * Cost: a float32 copy of each dequantized target tensor from the delivery of its first item to
 * that of its last, and each scale tensor of the plan, read whole; the FP8 → float32 conversion
 * runs on worker threads as any cast on load, the products on the calling thread.
 *
 * @example
 * ```ts
 * const reader = new QuantizedHuggingFaceStorageReader({ path: "./DeepSeek-V3-fp8" });
 * await load(stateDict, { storageReader: reader }); // float32 or bfloat16 tensors, dequantized
 * ```
 */
export class QuantizedHuggingFaceStorageReader extends FileSystemReader {
  /** The dtype the products are rounded to before the cast into the target. */
  readonly targetDtype: DType;
  /** The side of a scale block, in elements. */
  readonly blockSize: number;
  /** Each quantized weight's fqn → its scales' fqn. */
  #scaleOf = new Map<string, string>();

  /**
   * @param options - see {@link QuantizedHuggingFaceStorageReaderOptions}.
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` for a `blockSize` that is not an integer ≥ 1,
   * and as {@link FileSystemReader}.
   */
  constructor(options: QuantizedHuggingFaceStorageReaderOptions) {
    super(options);
    this.targetDtype = options.targetDtype ?? "float32";
    this.blockSize = options.blockSize ?? 128;
    assertIntegerInRange("blockSize", this.blockSize, 1);
  }

  /**
   * @inheritDoc
   * Pairs each `X.weight` with its `X.weight_scale_inv`, as torch's `_build_weight_scale_mapping`.
   */
  override async readMetadata(signal?: AbortSignal): Promise<Metadata> {
    const metadata = await super.readMetadata(signal);
    this.#scaleOf = new Map();
    for (const fqn of metadata.stateDictMetadata.keys()) {
      if (!fqn.endsWith(WEIGHT_SCALE_INV_SUFFIX)) continue;
      const weight = `${fqn.slice(0, -WEIGHT_SCALE_INV_SUFFIX.length)}.weight`;
      if (metadata.stateDictMetadata.get(weight)?.type === "tensor") this.#scaleOf.set(weight, fqn);
    }
    return metadata;
  }

  /** The quantized weights found by {@link readMetadata}: each weight's fqn → its scales' fqn. */
  get quantizedWeights(): ReadonlyMap<string, string> {
    return this.#scaleOf;
  }

  /**
   * @inheritDoc
   * Reads the scales of the plan's quantized weights first (whole, verified as any item), then
   * the plan, each quantized weight's items through a float32 copy that is dequantized and cast
   * into the target.
   * @throws {@link CheckpointError} `UNSUPPORTED_DTYPE` for a quantized weight that is not 2-D
   * (torch: "Unsupported quantization types"), or scales that are not 2-D or do not cover every
   * block of the weight; and as {@link FileSystemReader.readData}.
   */
  override async readData(plan: LoadPlan, planner: LoadPlanner, signal?: AbortSignal): Promise<void> {
    const quantized = new Set<string>();
    for (const item of plan.items)
      if (item.type === "tensor" && this.#scaleOf.has(item.storageIndex.fqn))
        quantized.add(item.storageIndex.fqn);
    if (quantized.size === 0) return super.readData(plan, planner, signal);
    const scales = new Map<string, Scales>();
    for (const fqn of quantized) scales.set(fqn, await this.#readScales(fqn, signal));

    // One float32 copy per target tensor, shared by its items: allocated when the first of them
    // is delivered (the read scheduler resolves every item up front, looking at dtype and shape
    // only), dropped when the last is in, so that only the items being read hold one.
    const copies = new Map<Tensor, { copy: Tensor; pending: number }>();
    for (const item of plan.items) {
      if (!quantized.has(item.storageIndex.fqn)) continue;
      const target = planner.resolveTensor(item);
      const entry = copies.get(target);
      if (entry) entry.pending++;
      else copies.set(target, { copy: lazyFloat32(target.shape), pending: 1 });
    }
    const isQuantized = (item: ReadItem) => item.type === "tensor" && quantized.has(item.storageIndex.fqn);
    const resolveTensor = (item: ReadItem): Tensor => {
      const target = planner.resolveTensor(item);
      return isQuantized(item) ? copies.get(target)!.copy : target;
    };
    const commitTensor = (item: ReadItem, tensor: Tensor): void => {
      if (!isQuantized(item) || item.type !== "tensor") {
        planner.commitTensor(item, tensor);
        return;
      }
      const target = planner.resolveTensor(item);
      const entry = copies.get(target)!;
      this.#dequantize(item, entry.copy, target, scales.get(item.storageIndex.fqn)!);
      if (--entry.pending === 0) copies.delete(target);
      planner.commitTensor(item, target);
    };
    const wrapped = new Proxy(planner, {
      get(p, key) {
        if (key === "resolveTensor") return resolveTensor;
        if (key === "commitTensor") return commitTensor;
        const value = Reflect.get(p, key, p) as unknown;
        return typeof value === "function" ? value.bind(p) : value;
      },
    });
    return super.readData(plan, wrapped, signal);
  }

  /** A quantized weight's scales, read whole into float32 (cast on load, as torch's promotion). */
  async #readScales(weight: string, signal?: AbortSignal): Promise<Scales> {
    const fqn = this.#scaleOf.get(weight)!;
    const md = this.metadata!.stateDictMetadata;
    const entry = md.get(fqn) as TensorStorageMetadata;
    const weightEntry = md.get(weight) as TensorStorageMetadata;
    if (weightEntry.size.length !== 2) {
      throw new CheckpointError(
        "UNSUPPORTED_DTYPE",
        `Expected the quantized weight "${weight}" to be 2-D (block-scaled by "${fqn}"), got shape [${weightEntry.size.join(", ")}]`,
      );
    }
    const blocks = weightEntry.size.map((n) => Math.ceil(n / this.blockSize));
    if (entry.size.length !== 2 || entry.size[0]! < blocks[0]! || entry.size[1]! < blocks[1]!) {
      throw new CheckpointError(
        "UNSUPPORTED_DTYPE",
        `Expected the scales "${fqn}" of "${weight}" [${weightEntry.size.join(", ")}] to cover its ${this.blockSize}×${this.blockSize} blocks: at least [${blocks.join(", ")}], got [${entry.size.join(", ")}]`,
      );
    }
    const scale = emptyTensor("float32", entry.size);
    const items: ReadItem[] = entry.chunks.map((chunk) => ({
      type: "tensor",
      destIndex: { fqn, offset: chunk.offsets },
      destOffsets: chunk.offsets,
      storageIndex: { fqn, offset: chunk.offsets },
      storageOffsets: chunk.offsets.map(() => 0),
      lengths: chunk.sizes,
    }));
    const reader: Pick<LoadPlanner, "resolveTensor" | "commitTensor" | "loadBytes"> = {
      resolveTensor: () => scale,
      commitTensor: () => {},
      loadBytes: () => {},
    };
    await super.readData({ items }, reader as LoadPlanner, signal);
    const values = scale.data as Float32Array;
    return {
      fqn,
      values,
      bits: new Uint32Array(values.buffer, values.byteOffset, values.length),
      rows: entry.size[0]!,
      cols: entry.size[1]!,
    };
  }

  /**
   * Dequantizes an item's box of the float32 copy in place (each element times its block's scale,
   * rounded to float32, NaNs as x86-64's `mulps` with the scale first) and casts it — through
   * `targetDtype` — into the target.
   */
  #dequantize(item: ReadItem & { type: "tensor" }, copy: Tensor, target: Tensor, scales: Scales): void {
    const [rows, cols] = item.lengths as [number, number];
    if (rows === 0 || cols === 0) return;
    const values = copy.data as Float32Array;
    const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
    const width = copy.shape[1]!;
    const chunk = item.storageIndex.offset ?? [0, 0];
    const row0 = chunk[0]! + item.storageOffsets[0]!;
    const col0 = chunk[1]! + item.storageOffsets[1]!;
    const bs = this.blockSize;
    for (let i = 0; i < rows; i++) {
      const scaleRow = Math.floor((row0 + i) / bs) * scales.cols;
      let at = (item.destOffsets[0]! + i) * width + item.destOffsets[1]!;
      for (let j = 0; j < cols; j++, at++) {
        const s = scaleRow + Math.floor((col0 + j) / bs);
        const scale = scales.values[s]!;
        const w = values[at]!;
        if (Number.isNaN(scale)) bits[at] = (scales.bits[s]! | 0x400000) >>> 0;
        else if (!Number.isNaN(w)) {
          const product = w * scale; // exact in float64: one rounding, below
          if (Number.isNaN(product))
            bits[at] = 0xffc00000; // inf × 0: x86's default NaN
          else values[at] = product;
        } // a NaN weight keeps its bits
      }
    }
    const zeros = [0, 0];
    const into = tensorBytes(target);
    if (this.targetDtype === "float32") {
      const box = boxCast(copy.shape, item.destOffsets, target.shape, item.destOffsets, item.lengths)!;
      castBox("float32", tensorBytes(copy), target.dtype, into, box);
      return;
    }
    // Rounded to targetDtype first (torch's `block.to(target_dtype)`), then `target.copy_`.
    const rounded = emptyTensor(this.targetDtype, item.lengths);
    castBox(
      "float32",
      tensorBytes(copy),
      this.targetDtype,
      tensorBytes(rounded),
      boxCast(copy.shape, item.destOffsets, item.lengths, zeros, item.lengths)!,
    );
    castBox(
      this.targetDtype,
      tensorBytes(rounded),
      target.dtype,
      into,
      boxCast(item.lengths, zeros, target.shape, item.destOffsets, item.lengths)!,
    );
  }
}
