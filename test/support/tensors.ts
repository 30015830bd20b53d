import {
  DTYPE_BYTES,
  type DType,
  emptyTensor,
  numel,
  type StateDict,
  type Tensor,
  tensorBytes,
} from "@dcpjs/core";

/** A deterministic pseudo-random tensor (every byte drawn from a seeded generator). */
export function randomTensor(dtype: DType, shape: readonly number[], seed = 1): Tensor {
  const t = emptyTensor(dtype, shape);
  const bytes = tensorBytes(t);
  let x = seed * 2654435761 || 1;
  for (let i = 0; i < bytes.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x & 0xff;
  }
  if (dtype === "bool") for (let i = 0; i < bytes.length; i++) bytes[i]! &= 1;
  return t;
}

/** A float32 tensor whose element i is i (handy to see which slice landed where). */
export function arange(shape: readonly number[]): Tensor {
  const t = emptyTensor("float32", shape);
  for (let i = 0; i < t.data.length; i++) t.data[i] = i;
  return t;
}

/** Whether two tensors have the same dtype, shape and bytes. */
export function sameTensor(a: Tensor, b: Tensor): boolean {
  if (a.dtype !== b.dtype || a.shape.join(",") !== b.shape.join(",")) return false;
  return Buffer.from(tensorBytes(a)).equals(Buffer.from(tensorBytes(b)));
}

/** Bytes of a tensor of `shape` and `dtype`. */
export function byteSize(dtype: DType, shape: readonly number[]): number {
  return numel(shape) * DTYPE_BYTES[dtype];
}

/** Tensors of a state dict saved by the overwrite and race tests: 16 × 256 KiB, every byte from `seed`. */
export const SEEDED_TENSORS = 16;

/** The state dict of seed `seed`: `w0`…`w15` (float32 [256, 256]) and `seed`. */
export function seededState(seed: number): StateDict {
  const sd: StateDict = { seed };
  for (let i = 0; i < SEEDED_TENSORS; i++) sd[`w${i}`] = randomTensor("float32", [256, 256], seed * 100 + i);
  return sd;
}

/** An empty target for {@link seededState}. */
export function seededTarget(): StateDict {
  const sd: StateDict = { seed: -1 };
  for (let i = 0; i < SEEDED_TENSORS; i++) sd[`w${i}`] = emptyTensor("float32", [256, 256]);
  return sd;
}

/** The seed whose state `loaded` equals exactly, or undefined when it matches none of `seeds`. */
export function whichSeed(loaded: StateDict, seeds: readonly number[]): number | undefined {
  return seeds.find((seed) => {
    const want = seededState(seed);
    return (
      loaded.seed === seed &&
      Object.keys(want).every((k) => k === "seed" || sameTensor(loaded[k] as Tensor, want[k] as Tensor))
    );
  });
}

/** A tensor's bytes as hex: equal strings mean bit-identical tensors (the peers' expected files use it too). */
export function hexOf(t: Tensor): string {
  return Buffer.from(tensorBytes(t)).toString("hex");
}
