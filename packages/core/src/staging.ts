import { copyBytes, isSharedMemory, SharedMemory } from "#platform";
import { CheckpointError } from "./errors.js";
import type { StateDict } from "./model/state-dict.js";
import { isShardedTensor, isTensor, type Tensor } from "./model/tensor.js";
import { assertStateDictValue } from "./model/value-codec.js";
import { STAGING_ALIGN, type StagingPool } from "./staging-pool.js";

/** A staged copy of a state dict, and the release of the memory it holds. */
export interface StagedStateDict {
  /** The copy: its tensors and shards lie in shared memory, its values are clones. */
  readonly stateDict: StateDict;
  /** Gives the copy's buffers back (once the save that reads them has settled); idempotent. */
  release(): void;
}

/**
 * How {@link asyncSave} stages tensors, as DCP's choice of `AsyncStager`: `"copy"` copies every
 * tensor into pooled shared memory; `"none"` passes tensors already in a `SharedArrayBuffer` on as
 * they are (no staging, as DCP's `async_save` with a stager that returns the state dict itself) and
 * copies the others.
 */
export type StagingMode = "copy" | "none";

/** Options of {@link stageStateDict}. */
export interface StageOptions {
  /** The pool to take the staging buffer from; without one, a fresh buffer per call. */
  readonly pool?: StagingPool;
  /** See {@link StagingMode}. @default "copy" */
  readonly staging?: StagingMode;
}

function alignUp(n: number): number {
  return Math.ceil(n / STAGING_ALIGN) * STAGING_ALIGN;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return (
    typeof value === "object" &&
    value !== null &&
    !ArrayBuffer.isView(value) &&
    Object.getPrototypeOf(value) === Object.prototype
  );
}

/** Whether staging copies `t` (else it is passed on as it is). */
function copies(t: Tensor, mode: StagingMode): boolean {
  return mode === "copy" || !isSharedMemory(t.data.buffer);
}

/** The tensors staging will copy, in the order {@link Stager.stage} meets them. */
function tensorsToCopy(value: unknown, mode: StagingMode, out: Tensor[]): Tensor[] {
  if (isTensor(value)) {
    if (copies(value, mode)) out.push(value);
  } else if (isShardedTensor(value)) {
    for (const s of value.shards) if (copies(s.tensor, mode)) out.push(s.tensor);
  } else if (Array.isArray(value)) {
    for (const v of value) tensorsToCopy(v, mode, out);
  } else if (isPlainObject(value)) {
    for (const key of Object.keys(value)) tensorsToCopy(value[key], mode, out);
  }
  return out;
}

/** Copies tensors into consecutive aligned views of one shared buffer. */
class Stager {
  private offset = 0;
  constructor(
    private readonly buffer: ArrayBufferLike | undefined,
    private readonly mode: StagingMode,
  ) {}

  private tensor(t: Tensor): Tensor {
    if (!copies(t, this.mode)) return { dtype: t.dtype, shape: [...t.shape], data: t.data };
    const n = t.data.byteLength;
    const data = this.buffer ? new Uint8Array(this.buffer, this.offset, n) : new Uint8Array(0);
    this.offset += alignUp(n);
    if (n > 0) copyBytes(data, new Uint8Array(t.data.buffer, t.data.byteOffset, n));
    return { dtype: t.dtype, shape: [...t.shape], data };
  }

  /** A copy of a state dict whose tensors, shards and values no longer share memory with it. */
  stage(value: unknown): unknown {
    if (isTensor(value)) return this.tensor(value);
    if (isShardedTensor(value)) {
      return {
        dtype: value.dtype,
        shape: [...value.shape],
        shards: value.shards.map((s) => ({ offsets: [...s.offsets], tensor: this.tensor(s.tensor) })),
      };
    }
    if (Array.isArray(value)) return value.map((v) => this.stage(v));
    if (isPlainObject(value)) {
      const out: Record<string, unknown> = {};
      for (const key of Object.keys(value))
        Object.defineProperty(out, key, {
          value: this.stage(value[key]),
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
 * step of {@link asyncSave}, as DCP's staging of `async_save`. The tensors are copied once each,
 * into aligned views of one `SharedArrayBuffer` taken from `options.pool` (reused while the shapes
 * stay the same), with a native memcpy for all but small tensors. With `staging: "none"`, tensors
 * already in a `SharedArrayBuffer` are not copied: the copy views their memory.
 *
 * @param stateDict - this rank's state dict.
 * @param maxBytes - the most tensor bytes to copy.
 * @param options - see {@link StageOptions}.
 * @returns the copy, and `release()` — which gives its buffer back to the pool: call it once the
 * save that reads the copy has settled.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when the tensors to copy exceed `maxBytes`
 * (nothing is copied).
 */
export function stageStateDict(
  stateDict: StateDict,
  maxBytes: number,
  options: StageOptions = {},
): StagedStateDict {
  const mode = options.staging ?? "copy";
  const tensors = tensorsToCopy(stateDict, mode, []);
  let bytes = 0;
  let aligned = 0;
  for (const t of tensors) {
    bytes += t.data.byteLength;
    aligned += alignUp(t.data.byteLength);
  }
  if (bytes > maxBytes) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected at most maxStagingBytes=${maxBytes} bytes of tensors to stage, this rank's state dict holds ${bytes}`,
    );
  }
  const { pool } = options;
  let buffer: ArrayBufferLike | undefined;
  if (aligned > 0) buffer = pool ? pool.take(aligned, maxBytes) : new SharedMemory(aligned);
  let copy: StateDict;
  try {
    copy = new Stager(buffer, mode).stage(stateDict) as StateDict;
  } catch (e) {
    if (buffer) pool?.give(buffer);
    throw e;
  }
  let released = false;
  return {
    stateDict: copy,
    release: () => {
      if (released || !buffer) return;
      released = true;
      pool?.give(buffer);
    },
  };
}
