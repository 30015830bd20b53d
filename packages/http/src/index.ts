// @dcpjs/http — checkpoints over HTTP(S) and from the Hugging Face Hub, read-only. Importing it
// registers the http://, https:// and hf:// storage backend (./register.ts) with @dcpjs/core.
import "./register.js";

export {
  createFetchTransport,
  type FetchTransportOptions,
  fetchTransport,
} from "./fetch-transport.js";
export {
  type ContentRange,
  type FileIdentity,
  identityChange,
  parseContentRange,
  preconditionHeaders,
} from "./file-identity.js";
export {
  DEFAULT_HF_ENDPOINT,
  type HfLocation,
  isHttpCheckpointId,
  parseHfId,
  resolveHfUrl,
} from "./hf-url.js";
export { cacheIdOf, HttpCachedReadStream } from "./http-cached-read-stream.js";
export { HttpClient, MAX_REDIRECTS } from "./http-client.js";
export { HttpRequestError, parseRetryAfter } from "./http-errors.js";
export { HttpFileSystem, MAX_TREE_PAGE_BYTES, MAX_TREE_PAGES } from "./http-file-system.js";
export {
  DEFAULT_MAX_ATTEMPTS,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_TIMEOUT_MS,
  type HttpOptions,
  MAX_RETRY_AFTER_MS,
} from "./http-options.js";
export { HttpReadStream, PROBE_BYTES } from "./http-read-stream.js";
export { HttpStorageReader, type HttpStorageReaderOptions } from "./http-storage-reader.js";
export type { AnswerBody, HttpAnswer, HttpTransport } from "./http-transport.js";
export { httpStorageBackend } from "./register.js";
