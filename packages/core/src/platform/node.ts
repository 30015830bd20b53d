// The Node.js platform: what the engine needs from its runtime, as Node offers it. Chosen by the
// package's `#platform` import (package.json `imports`: every condition but `browser`); its twin
// for browsers is `browser.ts`, with the same exports. The engine imports these by name, once, at
// module level: no lookup per call.
import { constants as bufferConstants } from "node:buffer";

export { randomUUID } from "node:crypto";
export { setMaxListeners } from "node:events";
export { LocalFileSystem } from "../storage/local-file-system.js";
export { ReadCache } from "../storage/read-cache.js";
export {
  castOnWorker,
  checksumOffload,
  collectWorkerHeaps,
  copyOnWorker,
  resolveWorkerMinBytes,
  runsOffThread,
  startWorkers,
  workerThreadsRunning,
} from "../storage/worker-pool.js";

/** The runtime's name, for messages. */
export const PLATFORM_NAME = "Node.js";

/** Longest byte array the runtime allocates (bytes): one Node.js `Buffer`'s limit. */
export const MAX_BYTE_LENGTH: number = bufferConstants.MAX_LENGTH;

/**
 * The memory staging buffers, staged tensors and shared tensors live in: `SharedArrayBuffer`,
 * which worker threads read and write without a copy.
 */
export const SharedMemory: new (bytes: number) => ArrayBufferLike = SharedArrayBuffer;

/**
 * Whether a buffer is shared memory ({@link SharedMemory}).
 *
 * @param buffer - the buffer.
 */
export function isSharedMemory(buffer: ArrayBufferLike): boolean {
  return buffer instanceof SharedArrayBuffer;
}

/**
 * A byte array of `bytes` bytes whose contents are unspecified, outside Node's `Buffer` pool
 * (`Buffer.allocUnsafeSlow`): nothing else shares its memory.
 *
 * @param bytes - its length (bytes).
 */
export function allocBytes(bytes: number): Uint8Array {
  return Buffer.allocUnsafeSlow(bytes);
}

/**
 * The bytes of several arrays one after the other, in one new array (`Buffer.concat`).
 *
 * @param parts - the arrays.
 * @param bytes - their total length (bytes), when the caller knows it.
 */
export function concatBytes(parts: readonly Uint8Array[], bytes?: number): Uint8Array {
  return Buffer.concat(parts, bytes);
}

/**
 * The UTF-8 bytes of a string.
 *
 * @param text - the string.
 */
export function utf8Bytes(text: string): Uint8Array {
  return Buffer.from(text);
}

/**
 * Whether a value is a Node.js `Buffer` (a `Uint8Array` whose `subarray` views the same memory, as
 * any `Uint8Array`'s, but whose type callers may not expect back).
 *
 * @param value - the value.
 */
export function isNodeBuffer(value: unknown): boolean {
  return Buffer.isBuffer(value);
}

/**
 * Reports a problem that does not stop the operation (`process.emitWarning`).
 *
 * @param message - what happened.
 * @param options - `code` (a `DCPJS_*` name) and `detail`.
 */
export function emitWarning(
  message: string,
  options: { readonly code: string; readonly detail: string },
): void {
  process.emitWarning(message, options);
}

/**
 * Lets the process exit while a timer is pending (`Timeout#unref`).
 *
 * @param timer - what `setTimeout` or `setInterval` returned.
 */
export function unrefTimer(timer: ReturnType<typeof setTimeout>): void {
  timer.unref();
}
