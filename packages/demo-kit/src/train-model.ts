import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import * as tfl from "@tensorflow/tfjs-layers";

/**
 * Dense(`hidden`, relu) → Dense(1) on 4 inputs, with seeded initialisers: the same weights in
 * every process (TF.js on its pure-JS CPU backend is deterministic).
 *
 * @param hidden - units of the hidden layer. @default 16
 */
export function buildModel(hidden = 16): tfl.LayersModel {
  const model = tfl.sequential();
  model.add(
    tfl.layers.dense({
      units: hidden,
      activation: "relu",
      inputShape: [4],
      kernelInitializer: tfl.initializers.glorotUniform({ seed: 1 }),
    }),
  );
  model.add(tfl.layers.dense({ units: 1, kernelInitializer: tfl.initializers.glorotUniform({ seed: 2 }) }));
  return model;
}

/** The optimizers {@link makeOptimizer} knows. */
export const OPTIMIZERS = ["sgd", "momentum", "adam", "adamax", "rmsprop", "adagrad", "adadelta"] as const;

/**
 * An optimizer by name, with settings that make every slot matter.
 *
 * @param name - one of {@link OPTIMIZERS}.
 * @throws {@link Error} for another name.
 */
export function makeOptimizer(name: string): tf.Optimizer {
  switch (name) {
    case "sgd":
      return tf.train.sgd(0.05);
    case "momentum":
      return tf.train.momentum(0.05, 0.9);
    case "adam":
      return tf.train.adam(0.01);
    case "adamax":
      return tf.train.adamax(0.01);
    case "rmsprop":
      return tf.train.rmsprop(0.01, 0.9, 0.5);
    case "adagrad":
      return tf.train.adagrad(0.05);
    case "adadelta":
      return tf.train.adadelta(1.0);
    default:
      throw new Error(`Expected an optimizer among ${OPTIMIZERS.join(", ")}, got ${name}`);
  }
}

/** 64 samples of 4 features and a target, from a fixed generator (the same in every process). */
export function trainingData(): { x: tf.Tensor; y: tf.Tensor } {
  let s = 12345;
  const next = () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648 - 0.5;
  };
  const xs = Array.from({ length: 64 * 4 }, next);
  const ys = Array.from(
    { length: 64 },
    (_, i) => xs[i * 4]! * 2 - xs[i * 4 + 1]! + 0.5 * xs[i * 4 + 2]! * xs[i * 4 + 3]!,
  );
  return { x: tf.tensor2d(xs, [64, 4]), y: tf.tensor2d(ys, [64, 1]) };
}

/**
 * float32 values as 8-hex-digit bit patterns: equal strings mean bit-identical values.
 *
 * @param values - the values (rounded to float32).
 */
export function float32Bits(values: readonly number[]): string[] {
  const f = new Float32Array(values);
  return Array.from(new Uint32Array(f.buffer), (u) => u.toString(16).padStart(8, "0"));
}
