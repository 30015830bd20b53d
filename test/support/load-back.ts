import { emptyTensor, load, type StateDict, type Tensor } from "@dcpjs/core";
import { expect } from "vitest";
import { sameTensor } from "./tensors.js";

/**
 * Loads every tensor of `full` whole, on one rank, from the checkpoint at `dir`, and expects each
 * bit-exact (the assertion names the fqn that differs).
 *
 * @param dir - the checkpoint folder.
 * @param full - fqn → the whole tensor saved under it.
 */
export async function expectLoadsWhole(dir: string, full: Readonly<Record<string, Tensor>>): Promise<void> {
  const sd: StateDict = {};
  for (const [fqn, t] of Object.entries(full)) sd[fqn] = emptyTensor(t.dtype, t.shape);
  await load(sd, { checkpointId: dir });
  for (const [fqn, t] of Object.entries(full)) expect(sameTensor(sd[fqn] as Tensor, t), fqn).toBe(true);
}
