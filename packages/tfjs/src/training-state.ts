import {
  CheckpointError,
  isShardedTensor,
  isTensor,
  type Loaded,
  type LoadStateDictFromKeysOptions,
  loadStateDictFromKeys,
  type ShardedTensor,
  type StateDict,
  shardTensor,
  type Tensor,
} from "@dcpjs/core";
import * as tf from "@tensorflow/tfjs-core";
import type { LayersModel } from "@tensorflow/tfjs-layers";
import { type CastTensor, fromTf, type TfDType, toTf } from "./tensors.js";

/** Options of {@link toStateDict}. */
export interface ToStateDictOptions {
  /** The optimizer whose state to include (its weights and the hidden accumulators). @default none */
  readonly optimizer?: tf.Optimizer;
  /** Your own values: step counters, the data loader's position, an RNG seed… (msgpack values or tensors). */
  readonly extra?: StateDict;
  /**
   * Data-parallel ranks: each rank passes its place, and the optimizer's slots (≥ 1 dimension) are
   * split along dimension 0 across ranks (ZeRO-1 style, `shardTensor`), so each rank writes only
   * its piece; model weights stay whole (replicated: the planner writes one copy). @default not sharded
   */
  readonly shard?: { readonly rank: number; readonly worldSize: number };
}

/** The optimizer part of a training state dict. */
interface OptimizerState {
  className: string;
  iterations: number;
  /** Slot names with model variables replaced by their keys, e.g. `layers.0.kernel/m`. */
  slotNames: string[];
  slots: (Tensor | ShardedTensor)[];
  hidden: Record<string, Tensor>;
}

/**
 * What {@link restoreStateDict} and {@link loadTrainingState} return.
 *
 * @typeParam E - the type of the `extra` saved with the state (unchecked, as
 * `loadStateDictFromKeys`'s type parameter): its sharded tensors come back whole `Tensor`s.
 * @default `StateDict | undefined` (undefined when the state was saved without `extra`)
 */
export interface RestoredState<E extends StateDict | undefined = StateDict | undefined> {
  /** The `extra` values saved with the state (as loaded). */
  readonly extra: Loaded<E>;
  /**
   * The tensors saved in another dtype than their TF.js variable's (a `bfloat16`, `float16` or
   * FP8 checkpoint restored into a `float32` model), which were cast on load with torch's `copy_`
   * semantics — in restore order (weights, optimizer slots, hidden accumulators); empty when none was.
   */
  readonly cast: readonly CastTensor[];
}

/** Options of {@link restoreStateDict}. */
export interface RestoreStateDictOptions {
  /** The (new) optimizer of the same class to restore into. @default none (weights only) */
  readonly optimizer?: tf.Optimizer;
  /**
   * Refuse (`DTYPE_MISMATCH`) a tensor saved in another dtype than its TF.js variable's instead of
   * casting it (as `load`'s `strictDtype`). @default false
   */
  readonly strictDtype?: boolean;
}

type LayerVariableLike = LayersModel["weights"][number];

/**
 * The model's weights with a stable key each: `layers.{i}.{name}`, where `i` is the layer's
 * index in `model.layers` and `name` the weight's name inside its layer (`kernel`, `bias`,
 * `moving_mean`…), so a model built again in another process — where TF.js numbers its layers
 * differently — finds its weights, as PyTorch's `model.layers.0.weight`.
 */
function keyedWeights(model: LayersModel): { key: string; variable: LayerVariableLike }[] {
  const out: { key: string; variable: LayerVariableLike }[] = [];
  model.layers.forEach((layer, i) => {
    for (const variable of layer.weights) {
      const prefix = `${layer.name}/`;
      const name = variable.name.startsWith(prefix) ? variable.name.slice(prefix.length) : variable.name;
      out.push({ key: `layers.${i}.${name}`, variable });
    }
  });
  return out;
}

/** Rewrites an optimizer slot name between variable names and weight keys, longest match first. */
function renamer(from: readonly string[], to: readonly string[]): (name: string) => string {
  const order = from.map((f, i) => [f, to[i]!] as const).sort((a, b) => b[0].length - a[0].length);
  return (name) => {
    const hit = order.find(([f]) => name.startsWith(`${f}/`));
    return hit ? `${hit[1]}${name.slice(hit[0].length)}` : name;
  };
}

/** Adamax keeps its state out of `getWeights` (TF.js 4 throws "not implemented"): read its fields. */
interface AdamaxInternals {
  accumulatedFirstMoment: { originalName: string; variable: tf.Variable }[];
  accumulatedWeightedInfNorm: { originalName: string; variable: tf.Variable }[];
  iteration: tf.Variable;
  accBeta1: tf.Variable;
  iterations_: number;
}

/** Adam's hidden accumulators (β₁ᵗ, β₂ᵗ): `setWeights` recomputes them with `pow`, 1 ULP off a running product. */
interface AdamInternals {
  accBeta1: tf.Variable;
  accBeta2: tf.Variable;
}

async function optimizerState(
  optimizer: tf.Optimizer,
  toKey: (name: string) => string,
  shard: ToStateDictOptions["shard"],
): Promise<OptimizerState> {
  const className = optimizer.getClassName();
  const place = (t: Tensor): Tensor | ShardedTensor =>
    shard && t.shape.length > 0
      ? shardTensor(t, { dim: 0, rank: shard.rank, worldSize: shard.worldSize })
      : t;
  let named: { name: string; tensor: tf.Tensor }[];
  const hidden: Record<string, Tensor> = {};
  if (className === "Adamax") {
    const a = optimizer as unknown as AdamaxInternals;
    named = [...a.accumulatedFirstMoment, ...a.accumulatedWeightedInfNorm].map((s) => ({
      name: s.originalName,
      tensor: s.variable,
    }));
    hidden.iteration = fromTf(a.iteration, "optimizer.hidden.iteration");
    hidden.accBeta1 = fromTf(a.accBeta1, "optimizer.hidden.accBeta1");
  } else {
    named = (await optimizer.getWeights()).slice(1); // the first is `iter`: optimizer.iterations
    if (className === "Adam") {
      const a = optimizer as unknown as AdamInternals;
      hidden.accBeta1 = fromTf(a.accBeta1, "optimizer.hidden.accBeta1");
      hidden.accBeta2 = fromTf(a.accBeta2, "optimizer.hidden.accBeta2");
    }
  }
  return {
    className,
    iterations: optimizer.iterations,
    slotNames: named.map((n) => toKey(n.name)),
    slots: named.map((n) => place(fromTf(n.tensor, `optimizer slot ${n.name}`))),
    hidden,
  };
}

/**
 * The training state of a TF.js model as a dcpjs state dict: every weight of the model, the
 * optimizer's weights (`getWeights()`) and the hidden state they leave out — Adam's and Adamax's
 * running `accBeta1` / `accBeta2` products, without which a resumed Adam drifts by 1 ULP — its
 * step counter, and your own values.
 *
 * Layout: `model.layers.{i}.{weight}` (see the docs), `optimizer.{className, iterations,
 * slotNames, slots, hidden}`, `extra`. Values are read once (`dataSync`): the state dict is a
 * snapshot that later training does not change.
 *
 * @param model - a TF.js `LayersModel` (`tf.sequential`, `tf.model`).
 * @param options - the optimizer, extra values, and this rank's place for sharded optimizer slots.
 * @returns a state dict for `save` / `asyncSave`.
 * @throws {@link CheckpointError} `INVALID_STATE_DICT` for a `string` or `complex64` weight.
 * @example
 * ```ts
 * await save(await toStateDict(model, { optimizer, extra: { epoch } }), { checkpointId: "./ckpt/epoch-3" });
 * ```
 */
export async function toStateDict(model: LayersModel, options: ToStateDictOptions = {}): Promise<StateDict> {
  const weights = keyedWeights(model);
  const layers: Record<string, Record<string, Tensor>> = {};
  for (const { key, variable } of weights) {
    const [, index, ...rest] = key.split(".");
    const layer = layers[index!] ?? {};
    layer[rest.join(".")] = fromTf(variable.read(), `model.${key}`);
    layers[index!] = layer;
  }
  const sd: StateDict = { model: { layers } };
  if (options.optimizer) {
    const toKey = renamer(
      weights.map((w) => w.variable.name),
      weights.map((w) => w.key),
    );
    sd.optimizer = (await optimizerState(options.optimizer, toKey, options.shard)) as unknown as StateDict;
  }
  if (options.extra !== undefined) sd.extra = options.extra;
  return sd;
}

function expectTensor(value: unknown, what: string): Tensor {
  if (isTensor(value)) return value;
  if (
    isShardedTensor(value) &&
    value.shards.length === 1 &&
    value.shards[0]!.tensor.shape.join() === value.shape.join()
  )
    return value.shards[0]!.tensor;
  throw new CheckpointError(
    "INVALID_STATE_DICT",
    `Expected "${what}" to be a whole tensor (load with loadStateDictFromKeys), got ${isShardedTensor(value) ? "a piece of one" : typeof value}`,
  );
}

/**
 * Puts a training state dict (from {@link toStateDict}, loaded whole — e.g. with
 * `loadStateDictFromKeys`, on any number of ranks) back into a model and optimizer: every
 * weight, the optimizer's slots, its step counter and hidden accumulators, so that training goes
 * on bit-identically to a run that never stopped (tested for sgd, momentum, adam, adamax,
 * rmsprop, adagrad and adadelta).
 *
 * @typeParam E - the type of the saved `extra` (unchecked; see {@link RestoredState}).
 *
 * A tensor saved in another dtype than its variable's — a `bfloat16`, `float16` or FP8 checkpoint
 * restored into a `float32` model — is cast as DCP's `dcp.load` casts into its target (torch's
 * `copy_`: round to nearest even, FP8 decoded exactly), and listed in the result's `cast`.
 *
 * @param model - a model of the same architecture as the saved one.
 * @param stateDict - the loaded state dict.
 * @param options - the optimizer to restore into, and `strictDtype`.
 * @returns the saved `extra` values, and the tensors cast.
 * @throws {@link CheckpointError} `MISSING_KEY` for a weight the checkpoint lacks,
 * `SIZE_MISMATCH` for another shape, `DTYPE_MISMATCH` for a dtype that cannot be cast to the
 * variable's (complex) or any other with `strictDtype`,
 * `INVALID_STATE_DICT` for an optimizer of another class or a state dict without an optimizer.
 */
export async function restoreStateDict<E extends StateDict | undefined = StateDict | undefined>(
  model: LayersModel,
  stateDict: StateDict,
  options: RestoreStateDictOptions = {},
): Promise<RestoredState<E>> {
  const cast: CastTensor[] = [];
  const convert = (t: Tensor, name: string, to: string) =>
    toTf(t, name, {
      to: to as TfDType,
      ...(options.strictDtype ? { strictDtype: true } : {}),
      onCast: (c) => cast.push(c),
    });
  const weights = keyedWeights(model);
  const layers = ((stateDict.model as StateDict | undefined)?.layers ?? {}) as Record<
    string,
    Record<string, unknown>
  >;
  for (const { key, variable } of weights) {
    const [, index, ...rest] = key.split(".");
    const saved = layers[index!]?.[rest.join(".")];
    if (saved === undefined)
      throw new CheckpointError("MISSING_KEY", `Expected the checkpoint to hold "model.${key}", it does not`);
    const t = expectTensor(saved, `model.${key}`);
    if (t.shape.join(",") !== variable.shape.join(",")) {
      throw new CheckpointError(
        "SIZE_MISMATCH",
        `Expected "model.${key}" of shape [${variable.shape.join(", ")}], the checkpoint has [${t.shape.join(", ")}]`,
      );
    }
    const value = convert(t, `model.${key}`, variable.dtype);
    variable.write(value);
    value.dispose();
  }
  if (options.optimizer) {
    const state = stateDict.optimizer as unknown as OptimizerState | undefined;
    if (!state) {
      throw new CheckpointError(
        "INVALID_STATE_DICT",
        "Expected the checkpoint to hold an optimizer state, it has none",
      );
    }
    await restoreOptimizer(
      options.optimizer,
      state,
      renamer(
        weights.map((w) => w.key),
        weights.map((w) => w.variable.name),
      ),
      convert,
    );
  }
  return { extra: stateDict.extra as Loaded<E>, cast };
}

async function restoreOptimizer(
  optimizer: tf.Optimizer,
  state: OptimizerState,
  toName: (key: string) => string,
  convert: (t: Tensor, name: string, to: string) => tf.Tensor,
): Promise<void> {
  const className = optimizer.getClassName();
  if (state.className !== className) {
    throw new CheckpointError(
      "INVALID_STATE_DICT",
      `Expected an optimizer of class ${state.className} (as saved), got ${className}`,
    );
  }
  const names = state.slotNames ?? [];
  // Optimizer slots are float32 variables in TF.js.
  const slots = (state.slots ?? []).map((s, k) =>
    convert(expectTensor(s, `optimizer.slots.${k}`), `optimizer.slots.${k}`, "float32"),
  );
  const hidden = state.hidden ?? {};
  const assign = (variable: tf.Variable, key: string) => {
    const value = convert(
      expectTensor(hidden[key], `optimizer.hidden.${key}`),
      `optimizer.hidden.${key}`,
      variable.dtype,
    );
    variable.assign(value);
    value.dispose();
  };
  if (className === "Adamax") {
    const a = optimizer as unknown as AdamaxInternals;
    tf.dispose([...a.accumulatedFirstMoment, ...a.accumulatedWeightedInfNorm].map((s) => s.variable));
    const half = slots.length / 2;
    const wrap = (t: tf.Tensor, k: number) => ({
      originalName: toName(names[k]!),
      variable: t.variable(false),
    });
    a.accumulatedFirstMoment = slots.slice(0, half).map((t, k) => wrap(t, k));
    a.accumulatedWeightedInfNorm = slots.slice(half).map((t, k) => wrap(t, half + k));
    assign(a.iteration, "iteration");
    assign(a.accBeta1, "accBeta1");
    a.iterations_ = state.iterations;
  } else {
    await optimizer.setWeights([
      { name: "iter", tensor: tf.scalar(state.iterations, "int32") },
      ...slots.map((tensor, k) => ({ name: toName(names[k]!), tensor })),
    ]);
    if (className === "Adam") {
      const a = optimizer as unknown as AdamInternals;
      assign(a.accBeta1, "accBeta1");
      assign(a.accBeta2, "accBeta2");
    }
  }
  tf.dispose(slots);
}

/** Options of {@link loadTrainingState}: where to load from (as `loadStateDictFromKeys`) and the optimizer. */
export interface LoadTrainingStateOptions extends LoadStateDictFromKeysOptions {
  /** The optimizer to restore into. @default none (weights only) */
  readonly optimizer?: tf.Optimizer;
  /** Refuse a tensor saved in another dtype than its variable's instead of casting it (see {@link restoreStateDict}). @default false */
  readonly strictDtype?: boolean;
}

/**
 * Loads a training state saved from {@link toStateDict} — on any number of ranks, whatever the
 * number that saved it — and restores it into the model and optimizer.
 *
 * @typeParam E - the type of the `extra` you saved (unchecked: your statement of what the
 * checkpoint holds, as `loadStateDictFromKeys<T>`); its sharded tensors come back whole `Tensor`s.
 * @default `StateDict | undefined`
 * @param model - a model of the same architecture.
 * @param options - the checkpoint (id or reader), process group, and optimizer.
 * @returns the saved `extra` values, and the tensors cast into their variable's dtype (a `bfloat16`,
 * `float16` or FP8 checkpoint into a `float32` model; see {@link restoreStateDict}).
 * @throws the errors of `loadStateDictFromKeys` and {@link restoreStateDict}.
 * @example
 * ```ts
 * const { extra } = await loadTrainingState<{ epoch: number }>(model, { checkpointId: "./ckpt/epoch-3", optimizer });
 * extra.epoch; // number, no cast
 * ```
 */
export async function loadTrainingState<E extends StateDict | undefined = StateDict | undefined>(
  model: LayersModel,
  options: LoadTrainingStateOptions,
): Promise<RestoredState<E>> {
  const { optimizer, strictDtype, ...load } = options;
  const sd = await loadStateDictFromKeys(load);
  return restoreStateDict<E>(model, sd, {
    ...(optimizer ? { optimizer } : {}),
    ...(strictDtype ? { strictDtype } : {}),
  });
}
