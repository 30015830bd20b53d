/**
 * Cast on load, as DCP: where torch's `dcp.load` ends in `target.copy_(saved)`, a target tensor of
 * another dtype than the saved one receives the saved values converted with `copy_`'s semantics
 * (the element casts live in model/cast-kernels.js, plain JavaScript that worker threads run).
 */

import { CheckpointError } from "../errors.js";
import { castBox as castBoxKernel, castRefusal as castRefusalKernel } from "./cast-kernels.js";
import { boxCopy } from "./geometry.js";
import type { StridedCopy } from "./strided-copy.js";

/**
 * Why a tensor saved as `src` cannot be loaded into a `dst` target (a sentence), or `undefined`
 * when it can: every pair among the real dtypes can; complex to real is refused (torch's `copy_`
 * would drop the imaginary part with a warning).
 *
 * @param src - the saved dtype, as torch names it.
 * @param dst - the target's dtype.
 */
export function castRefusal(src: string, dst: string): string | undefined {
  return castRefusalKernel(src, dst);
}

/**
 * A box cast between two row-major buffers, in elements: `run` elements per step, the bases and
 * strides in elements of each side (see {@link boxCast}).
 */
export type ElementBox = StridedCopy & {
  /** The elements cast. */
  readonly elements: number;
};

/**
 * The runs of a box cast — as `boxCopy`, counted in elements rather than bytes, since the two
 * sides' elements differ in size.
 *
 * @param srcShape - source shape in elements.
 * @param srcOffsets - box start in the source, elements per dimension.
 * @param dstShape - destination shape in elements.
 * @param dstOffsets - box start in the destination, elements per dimension.
 * @param lengths - box size in elements per dimension.
 * @returns the box, or `undefined` for an empty one.
 */
export function boxCast(
  srcShape: readonly number[],
  srcOffsets: readonly number[],
  dstShape: readonly number[],
  dstOffsets: readonly number[],
  lengths: readonly number[],
): ElementBox | undefined {
  const copy = boxCopy(srcShape, srcOffsets, dstShape, dstOffsets, lengths, 1);
  return copy && { ...copy, elements: copy.bytes };
}

/**
 * Casts a box of elements of dtype `srcDtype` into a buffer of dtype `dstDtype` on this thread,
 * with torch 2.13's `copy_` semantics on x86-64 (see docs/format.md, "Cast on load"): float ↔
 * float rounds to nearest even (float16, bfloat16 and float8 through float32, as c10 does);
 * float → int truncates toward zero; int → float rounds to nearest even; int ↔ int wraps; any
 * nonzero value is `true`; `bool` is 0 or 1. Equal dtypes copy the bytes.
 *
 * @param srcDtype - the source's dtype.
 * @param src - the source bytes.
 * @param dstDtype - the destination's dtype.
 * @param dst - the destination bytes.
 * @param box - the box ({@link boxCast}); its elements must lie inside both buffers.
 * @throws {@link CheckpointError} `DTYPE_MISMATCH` when {@link castRefusal} refuses the pair
 * (complex → real, a dtype with no cast such as FP4), before anything is written.
 */
export function castBox(
  srcDtype: string,
  src: Uint8Array,
  dstDtype: string,
  dst: Uint8Array,
  box: StridedCopy,
): void {
  assertCastable(srcDtype, dstDtype);
  castBoxKernel(srcDtype, src, dstDtype, dst, box);
}

/**
 * Refuses a pair {@link castRefusal} refuses, as a coded error — what a reader checks before it
 * hands a cast to a worker thread, whose own refusal would be an uncoded `Error`.
 *
 * @param srcDtype - the saved dtype.
 * @param dstDtype - the target's dtype.
 * @param fqn - the tensor, named in the message when given.
 * @throws {@link CheckpointError} `DTYPE_MISMATCH` naming both dtypes and why.
 */
export function assertCastable(srcDtype: string, dstDtype: string, fqn?: string): void {
  const reason = castRefusal(srcDtype, dstDtype);
  if (reason !== undefined)
    throw new CheckpointError(
      "DTYPE_MISMATCH",
      `Expected ${fqn === undefined ? "a target" : `"${fqn}"`} of a dtype ${srcDtype} can be cast to, got ${dstDtype}: ${reason}`,
    );
}
