/**
 * Cast on load, as DCP: where torch's `dcp.load` ends in `target.copy_(saved)`, a target tensor of
 * another dtype than the saved one receives the saved values converted with `copy_`'s semantics
 * (the element casts live in model/cast-kernels.js, plain JavaScript that worker threads run).
 */

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
 * @throws Error when {@link castRefusal} refuses the pair (planners check that first).
 */
export function castBox(
  srcDtype: string,
  src: Uint8Array,
  dstDtype: string,
  dst: Uint8Array,
  box: StridedCopy,
): void {
  castBoxKernel(srcDtype, src, dstDtype, dst, box);
}
