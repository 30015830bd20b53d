// What torch_peer.py says a checkpoint it saved holds, and the check that a load got it all.
import type { StateDict, Tensor } from "@dcpjs/core";
import { flattenStateDict } from "@dcpjs/core/extend";
import { expect } from "vitest";
import { hexOf } from "./tensors.js";
/** What torch_peer.py's `expected-{mode}.json` says a checkpoint holds: per fqn, a tensor's dtype, shape and bytes (hex), or a value. */
export type TorchExpected = Record<
  string,
  { dtype: string; shape: number[]; hex: string } | { value: unknown }
>;

/** Asserts that a loaded state dict holds every entry of a torch peer's expectation, bit for bit (each mismatch names its fqn). */
export function expectTorchEntries(sd: StateDict, expected: TorchExpected): void {
  const flat = flattenStateDict(sd).flat;
  for (const [fqn, e] of Object.entries(expected)) {
    const got = flat.get(fqn);
    if ("hex" in e) {
      const t = got as Tensor;
      expect({ fqn, dtype: t.dtype, shape: [...t.shape], hex: hexOf(t) }).toEqual({ fqn, ...e });
    } else {
      expect({ fqn, value: got }).toEqual({ fqn, value: e.value });
    }
  }
}
