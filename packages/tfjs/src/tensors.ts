import { CheckpointError, type DType, type Tensor, tensor, tensorBytes } from "@dcpjs/core";
import { boxCast, castBox, castRefusal } from "@dcpjs/core/extend";
import * as tf from "@tensorflow/tfjs-core";

/** The TF.js dtypes dcpjs stores, with the dcpjs (torch) dtype each becomes. */
const TO_DCPJS: Readonly<Record<string, DType>> = { float32: "float32", int32: "int32", bool: "bool" };

/** The dtypes TF.js trains with, as dcpjs (torch) names them. */
export type TfDType = "float32" | "int32" | "bool";

/**
 * A tensor loaded cast into the dtype of the TF.js variable it restores (a `bfloat16`, `float16`
 * or `float8_e4m3fn` checkpoint restored into a `float32` model): which, and from what.
 */
export interface CastTensor {
  /** The tensor's fqn in the checkpoint, e.g. `model.layers.0.kernel`. */
  readonly fqn: string;
  /** Its saved dtype (torch's name). */
  readonly from: DType;
  /** The dtype it was cast to: the TF.js variable's. */
  readonly to: TfDType;
}

/**
 * A dcpjs tensor with a TF.js tensor's dtype, shape and values (`dataSync`: the values are read
 * once; the dcpjs tensor does not follow later changes of a variable).
 *
 * @param t - a TF.js tensor of dtype `float32`, `int32` or `bool`.
 * @param name - its name, for errors.
 * @throws {@link CheckpointError} `INVALID_STATE_DICT` for `string` and `complex64` tensors.
 */
export function fromTf(t: tf.Tensor, name: string): Tensor {
  const dtype = TO_DCPJS[t.dtype];
  if (!dtype) {
    throw new CheckpointError(
      "INVALID_STATE_DICT",
      `Expected "${name}" to be a float32, int32 or bool tensor, got ${t.dtype}`,
    );
  }
  const values = t.dataSync();
  return tensor(dtype, t.shape, values as ArrayBufferView);
}

/** How {@link toTf} treats a tensor saved in another dtype than TF.js's. */
export interface ToTfOptions {
  /** The dtype the TF.js tensor must have (the variable's). @default the saved dtype, which must be `float32`, `int32` or `bool` */
  readonly to?: TfDType;
  /** Refuse (`DTYPE_MISMATCH`) a saved dtype other than `to` instead of casting. @default false */
  readonly strictDtype?: boolean;
  /** Receives each tensor cast. */
  readonly onCast?: (cast: CastTensor) => void;
}

/**
 * A new TF.js tensor with a dcpjs tensor's shape and values (copied), of dtype `options.to`: a
 * tensor saved in another dtype is cast with torch's `copy_` semantics, as DCP's `dcp.load` casts
 * into its target (core's `castBox`: float to float rounds to nearest even, FP8 decoded exactly,
 * float to int truncates toward zero), and reported through `options.onCast`.
 *
 * @param t - a dcpjs tensor.
 * @param name - its name (fqn), for errors and the cast report.
 * @param options - the target dtype, `strictDtype`, `onCast`.
 * @throws {@link CheckpointError} `DTYPE_MISMATCH` when `to` is omitted and `t` is not `float32`,
 * `int32` or `bool`; when `strictDtype` is set and `t` is not of dtype `to`; and when the cast is
 * refused (complex to real).
 */
export function toTf(t: Tensor, name: string, options: ToTfOptions = {}): tf.Tensor {
  const to = options.to ?? (TO_DCPJS[t.dtype] as TfDType | undefined);
  if (to === undefined) {
    throw new CheckpointError(
      "DTYPE_MISMATCH",
      `Expected "${name}" to be saved as float32, int32 or bool (the dtypes TF.js trains with), got ${t.dtype}`,
    );
  }
  let value = t;
  if (t.dtype !== to) {
    const refusal = options.strictDtype ? "strictDtype is set" : castRefusal(t.dtype, to);
    if (refusal !== undefined) {
      throw new CheckpointError(
        "DTYPE_MISMATCH",
        `Expected "${name}" to be saved as ${to} (the TF.js variable's dtype), got ${t.dtype}: ${refusal}`,
      );
    }
    value = tensor(to, t.shape);
    const box = boxCast(
      t.shape,
      t.shape.map(() => 0),
      t.shape,
      t.shape.map(() => 0),
      t.shape,
    );
    if (box) castBox(t.dtype, tensorBytes(t), to, tensorBytes(value), box);
    options.onCast?.({ fqn: name, from: t.dtype, to });
  }
  return tf.tensor(value.data as Float32Array | Int32Array | Uint8Array, [...value.shape], to);
}
