// @dcpjs/s3/testing — internals the test suite and the benchmarks reach for: the transfer
// settings resolved from a client config, the key escaping and the
// throttle's pieces. Not published: the build leaves it out of dist (tsconfig.json), and
// package.json exports this subpath under the "@dcpjs/source" condition only, which vitest,
// `tsc -p test` and `pnpm bench` set. Nothing here is a promise. One `export … from` per module,
// in module order.
export { resolveTransferSettings } from "./client-config.js";
export { escapePath } from "./s3-uri.js";
export { isThrottle, resolveThrottleOptions, throttleDelayMs, throttleKey } from "./throttle.js";
