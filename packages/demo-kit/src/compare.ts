import { isDeepStrictEqual } from "node:util";
import {
  isShardedTensor,
  isTensor,
  type StateDict,
  sliceTensor,
  type Tensor,
  tensorBytes,
} from "@dcpjs/core";
import { flattenStateDict } from "@dcpjs/core/extend";

function sameBytes(a: Tensor, b: Tensor): boolean {
  return (
    a.dtype === b.dtype &&
    a.shape.join(",") === b.shape.join(",") &&
    Buffer.from(tensorBytes(a)).equals(tensorBytes(b))
  );
}

/** What {@link compareStateDicts} found. */
export interface Comparison {
  /** Tensors (whole, or shards compared against the source's box) that matched bit for bit. */
  readonly tensors: number;
  /** Values that matched. */
  readonly values: number;
  /** fqns that differ or are missing, with why. */
  readonly mismatches: string[];
}

/**
 * Compares a loaded state dict with its source, bit for bit: every tensor (or each shard against
 * the same box of the source tensor) and every value (deep equality). With `complete`, a key of
 * the source missing from the loaded dict is a mismatch.
 *
 * @param source - the state dict that was saved (whole tensors).
 * @param loaded - what a rank loaded.
 * @param complete - whether `loaded` must hold every key of `source`.
 */
export function compareStateDicts(source: StateDict, loaded: StateDict, complete: boolean): Comparison {
  const src = flattenStateDict(source).flat;
  const got = flattenStateDict(loaded).flat;
  let tensors = 0;
  let values = 0;
  const mismatches: string[] = [];
  for (const [fqn, expected] of src) {
    if (!got.has(fqn)) {
      if (complete) mismatches.push(`${fqn}: missing after load`);
      continue;
    }
    const actual = got.get(fqn);
    if (isTensor(expected)) {
      if (isTensor(actual) && sameBytes(actual, expected)) tensors++;
      else if (
        isShardedTensor(actual) &&
        actual.shards.every((s) => sameBytes(s.tensor, sliceTensor(expected, s.offsets, s.tensor.shape)))
      )
        tensors++;
      else mismatches.push(`${fqn}: tensor bytes differ`);
    } else if (isDeepStrictEqual(actual, expected)) {
      values++;
    } else {
      mismatches.push(`${fqn}: value differs (${JSON.stringify(actual)?.slice(0, 80)})`);
    }
  }
  for (const fqn of got.keys()) if (!src.has(fqn)) mismatches.push(`${fqn}: not in the source`);
  return { tensors, values, mismatches };
}
