import { SharedMemory } from "#platform";
import { CheckpointError } from "./errors.js";
import type { StateDict } from "./model/state-dict.js";
import { isShardedTensor, isTensor, type Tensor, tensorBytes } from "./model/tensor.js";
import { assertStateDictValue } from "./model/value-codec.js";

/** A staged copy of a state dict, and the release of the memory it holds. */
export interface StagedStateDict {
  /** The copy: its tensors and shards lie in shared memory, its values are clones. */
  readonly stateDict: StateDict;
  /** Gives the copy's buffers back (once the save that reads them has settled). */
  release(): void;
}

/** A copy of a tensor's bytes, in shared memory: the background save checksums it on worker threads. */
function stagedTensor(t: Tensor): Tensor {
  const bytes = tensorBytes(t);
  const data = new Uint8Array(new SharedMemory(bytes.byteLength));
  data.set(bytes);
  return { dtype: t.dtype, shape: [...t.shape], data };
}

function stagingBytes(value: unknown): number {
  if (isTensor(value)) return value.data.byteLength;
  if (isShardedTensor(value)) return value.shards.reduce((n, s) => n + s.tensor.data.byteLength, 0);
  if (Array.isArray(value)) return value.reduce((n: number, v) => n + stagingBytes(v), 0);
  if (typeof value === "object" && value !== null && !ArrayBuffer.isView(value)) {
    return Object.values(value).reduce((n: number, v) => n + stagingBytes(v), 0);
  }
  return 0;
}

/** A copy of a state dict whose tensors, shards and values no longer share memory with it. */
function stage(value: unknown): unknown {
  if (isTensor(value)) return stagedTensor(value);
  if (isShardedTensor(value)) {
    return {
      dtype: value.dtype,
      shape: [...value.shape],
      shards: value.shards.map((s) => ({ offsets: [...s.offsets], tensor: stagedTensor(s.tensor) })),
    };
  }
  if (Array.isArray(value)) return value.map(stage);
  if (
    typeof value === "object" &&
    value !== null &&
    !ArrayBuffer.isView(value) &&
    Object.getPrototypeOf(value) === Object.prototype
  ) {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value))
      Object.defineProperty(out, key, {
        value: stage((value as Record<string, unknown>)[key]),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    return out;
  }
  // A value the save will refuse (a function, a class instance…) is passed on as it is, so that
  // every rank's plan step refuses it (INVALID_STATE_DICT) rather than this rank alone failing here.
  return isCloneable(value) ? structuredClone(value) : value;
}

function isCloneable(value: unknown): boolean {
  try {
    assertStateDictValue(value, "");
    return true;
  } catch {
    return false;
  }
}

/**
 * Copies a state dict's tensors and shards into shared memory and clones its values — the staging
 * step of {@link asyncSave}, as DCP's staging of `async_save`.
 *
 * @param stateDict - this rank's state dict.
 * @param maxBytes - the most tensor bytes to stage.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when the tensors exceed `maxBytes` (nothing is copied).
 */
export function stageStateDict(stateDict: StateDict, maxBytes: number): StagedStateDict {
  const bytes = stagingBytes(stateDict);
  if (bytes > maxBytes) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected at most maxStagingBytes=${maxBytes} bytes of tensors to stage, this rank's state dict holds ${bytes}`,
    );
  }
  return { stateDict: stage(stateDict) as StateDict, release: () => {} };
}
