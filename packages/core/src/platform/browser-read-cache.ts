import { CheckpointError } from "../errors.js";

/**
 * The read cache on disk in a browser: there is none (it needs Node.js's files and locks). Its
 * constructor throws, so a backend asked for a `cacheDir` there refuses at once; the browser
 * build's stand-in for Node's `ReadCache` (`#platform`).
 */
export class ReadCache {
  /**
   * Refuses.
   * @param options - the cache's options (`dir`, …).
   * @throws {@link CheckpointError} `INVALID_ARGUMENT`, always.
   */
  constructor(options: { readonly dir: string }) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected no cacheDir in a browser (the read cache on disk needs Node.js), got ${JSON.stringify(options.dir)}`,
    );
  }
}
