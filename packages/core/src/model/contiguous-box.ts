import { numel } from "./tensor.js";

/**
 * Where an n-d box lies in a row-major tensor when its elements are one contiguous run, in
 * elements: leading dimensions of the box have length 1, then one partial dimension, then whole
 * dimensions. `undefined` when the box is not contiguous.
 *
 * @param shape - the tensor's shape.
 * @param offsets - the box's start per dimension.
 * @param lengths - the box's size per dimension.
 * @returns the first element's index and the element count.
 */
export function contiguousRun(
  shape: readonly number[],
  offsets: readonly number[],
  lengths: readonly number[],
): { start: number; count: number } | undefined {
  let k = 0;
  while (k < lengths.length - 1 && lengths[k] === 1) k++;
  for (let i = k + 1; i < lengths.length; i++)
    if (lengths[i] !== shape[i] || offsets[i] !== 0) return undefined;
  let start = 0;
  let stride = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    start += offsets[i]! * stride;
    stride *= shape[i]!;
  }
  return { start, count: numel(lengths) };
}
