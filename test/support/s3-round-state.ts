import { emptyTensor, type StateDict, type Tensor } from "@dcpjs/core";
import { randomTensor, sameTensor } from "./tensors.js";

const MiB = 1024 * 1024;

/**
 * The state dict of the CPU-starved S3 rounds: two 6 MiB tensors (with `threadCount: 2` and
 * 5 MiB parts, two multipart uploads of 2 parts each), 8 small ones and a value.
 */
export function roundState(): StateDict {
  const sd: StateDict = {
    a: randomTensor("float32", [1.5 * MiB], 1),
    b: randomTensor("float32", [1.5 * MiB], 2),
    config: { lr: 0.5, name: "starved" },
  };
  for (let i = 0; i < 8; i++) sd[`small${i}`] = randomTensor("int32", [1000 + i], i + 3);
  return sd;
}

/** An empty state dict shaped as {@link roundState}, to load into. */
export function roundTarget(): StateDict {
  const sd: StateDict = {
    a: emptyTensor("float32", [1.5 * MiB]),
    b: emptyTensor("float32", [1.5 * MiB]),
    config: { lr: 0, name: "" },
  };
  for (let i = 0; i < 8; i++) sd[`small${i}`] = emptyTensor("int32", [1000 + i]);
  return sd;
}

/** Whether `a` holds exactly `b`'s bytes and values. */
export function sameRoundState(a: StateDict, b: StateDict): boolean {
  return Object.keys(b).every((k) =>
    k === "config"
      ? JSON.stringify(a[k]) === JSON.stringify(b[k])
      : sameTensor(a[k] as Tensor, b[k] as Tensor),
  );
}
