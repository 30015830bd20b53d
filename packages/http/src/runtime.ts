// What the HTTP backend asks of its host, in Node and in a browser alike: environment variables
// (none in a page), warnings, and an abortable wait.

/** An environment variable, or undefined where there are none (a browser). */
export function envVar(name: string): string | undefined {
  return globalThis.process?.env?.[name];
}

/**
 * Emits a warning: `process.emitWarning` under Node, `console.warn` elsewhere.
 * @param message - the warning.
 * @param code - its code, e.g. `DCPJS_HTTP_RANGE_IGNORED`.
 */
export function emitWarning(message: string, code: string): void {
  const emit = globalThis.process?.emitWarning;
  if (typeof emit === "function") emit.call(globalThis.process, message, { code });
  else console.warn(`${code}: ${message}`);
}

/**
 * Waits `ms` milliseconds, or until `signal` fires.
 * @throws the signal's reason when it fires first.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
