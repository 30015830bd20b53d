import { randomFillSync } from "node:crypto";
import { emptyTensor, type StateDict, type Tensor, tensorBytes } from "@dcpjs/core";

/**
 * A state dict of `count` float32 tensors of `mib` MiB each (`w0`, `w1`, …), filled with random
 * bytes (the same layout as the Python peers build).
 *
 * @param count - the number of tensors.
 * @param mib - MiB per tensor.
 */
export function float32StateDict(
  count: number,
  mib: number,
): { stateDict: Record<string, Tensor>; bytes: number } {
  const stateDict: Record<string, Tensor> = {};
  const elements = (mib * 1024 * 1024) / 4;
  for (let i = 0; i < count; i++) {
    const t = emptyTensor("float32", [elements / 1024, 1024]);
    randomFillSync(tensorBytes(t));
    stateDict[`w${i}`] = t;
  }
  return { stateDict, bytes: count * mib * 1024 * 1024 };
}

/** Zeroed tensors of the same shapes, to load into. */
export function emptyLike(sd: Record<string, Tensor>): StateDict {
  return Object.fromEntries(Object.entries(sd).map(([k, t]) => [k, emptyTensor(t.dtype, t.shape)]));
}
