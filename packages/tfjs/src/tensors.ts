import { CheckpointError, type DType, type Tensor, tensor } from "@dcpjs/core";
import * as tf from "@tensorflow/tfjs-core";

/** The TF.js dtypes dcpjs stores, with the dcpjs (torch) dtype each becomes. */
const TO_DCPJS: Readonly<Record<string, DType>> = { float32: "float32", int32: "int32", bool: "bool" };

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

/**
 * A new TF.js tensor with a dcpjs tensor's dtype, shape and values (copied).
 *
 * @param t - a dcpjs tensor of dtype `float32`, `int32` or `bool`.
 * @param name - its name, for errors.
 * @throws {@link CheckpointError} `DTYPE_MISMATCH` for other dtypes.
 */
export function toTf(t: Tensor, name: string): tf.Tensor {
  if (t.dtype !== "float32" && t.dtype !== "int32" && t.dtype !== "bool") {
    throw new CheckpointError(
      "DTYPE_MISMATCH",
      `Expected "${name}" to be saved as float32, int32 or bool (the dtypes TF.js trains with), got ${t.dtype}`,
    );
  }
  return tf.tensor(t.data as Float32Array | Int32Array | Uint8Array, [...t.shape], t.dtype);
}
