// The browser platform: what the engine needs from its runtime, as a page (or a Web Worker)
// offers it. Chosen by the package's `#platform` import under the `browser` condition (bundlers
// set it when they build for browsers); its twin for Node.js is `node.ts`, with the same exports.
// It imports no Node.js built-in: the browser bundle check (test/packaging/browser-bundle.test.ts)
// fails on one.

export { LocalFileSystem } from "./browser-local-file-system.js";
export { ReadCache } from "./browser-read-cache.js";
export {
  castOnWorker,
  checksumOffload,
  collectWorkerHeaps,
  copyOnWorker,
  resolveWorkerMinBytes,
  runsOffThread,
  startWorkers,
  workerThreadsRunning,
} from "./browser-worker-pool.js";

/** The runtime's name, for messages. */
export const PLATFORM_NAME = "a browser";

/**
 * Longest byte array the runtime allocates (bytes): 4 GiB, V8's limit (Chromium; as Node.js's
 * `buffer.constants.MAX_LENGTH`). A reader never stages more than one item in one.
 */
export const MAX_BYTE_LENGTH: number = 2 ** 32;

/** Whether this page may use `SharedArrayBuffer`: cross-origin isolated pages (and their workers) only. */
const SHARED =
  typeof SharedArrayBuffer === "function" &&
  (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true;

/**
 * The memory staging buffers, staged tensors and shared tensors live in: `SharedArrayBuffer` in a
 * cross-origin isolated page (Web Workers read and write it without a copy), a plain
 * `ArrayBuffer` elsewhere.
 */
export const SharedMemory: new (bytes: number) => ArrayBufferLike = SHARED ? SharedArrayBuffer : ArrayBuffer;

/**
 * Whether a buffer is shared memory: never in a page that is not cross-origin isolated.
 *
 * @param buffer - the buffer.
 */
export function isSharedMemory(buffer: ArrayBufferLike): boolean {
  return SHARED && buffer instanceof SharedArrayBuffer;
}

/**
 * A random version 4 UUID (`crypto.randomUUID`: pages served over HTTPS or from loopback).
 */
export function randomUUID(): string {
  return globalThis.crypto.randomUUID();
}

/**
 * Node's `events.setMaxListeners`: nothing to do in a browser, whose `EventTarget`s do not warn
 * about many listeners.
 *
 * @param _n - the limit.
 * @param _targets - the targets.
 */
export function setMaxListeners(_n?: number, ..._targets: EventTarget[]): void {}

/**
 * A byte array of `bytes` bytes (zeroed: browsers offer no uninitialised allocation).
 *
 * @param bytes - its length (bytes).
 */
export function allocBytes(bytes: number): Uint8Array {
  return new Uint8Array(bytes);
}

/**
 * The bytes of several arrays one after the other, in one new array.
 *
 * @param parts - the arrays.
 * @param bytes - their total length (bytes), when the caller knows it.
 */
export function concatBytes(parts: readonly Uint8Array[], bytes?: number): Uint8Array {
  const out = new Uint8Array(bytes ?? parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const part of parts) {
    if (at >= out.byteLength) break;
    const take = part.byteLength <= out.byteLength - at ? part : part.subarray(0, out.byteLength - at);
    out.set(take, at);
    at += take.byteLength;
  }
  return out;
}

const encoder = new TextEncoder();

/**
 * The UTF-8 bytes of a string.
 *
 * @param text - the string.
 */
export function utf8Bytes(text: string): Uint8Array {
  return encoder.encode(text);
}

/**
 * Whether a value is a Node.js `Buffer`: never in a browser.
 *
 * @param _value - the value.
 */
export function isNodeBuffer(_value: unknown): boolean {
  return false;
}

/**
 * Reports a problem that does not stop the operation: `console.warn`.
 *
 * @param message - what happened.
 * @param options - `code` (a `DCPJS_*` name) and `detail`.
 */
export function emitWarning(
  message: string,
  options: { readonly code: string; readonly detail: string },
): void {
  console.warn(`${options.code}: ${message}`, options.detail);
}

/**
 * Node's `Timeout#unref`: nothing to do in a browser, where a pending timer keeps nothing alive.
 *
 * @param _timer - what `setTimeout` or `setInterval` returned.
 */
export function unrefTimer(_timer: ReturnType<typeof setTimeout>): void {}
