// The test helpers the conformance suite uses compare bytes with Node's `Buffer`; a page gets the
// `buffer` package's (the browser implementation of the same API) as a global, for them only.
import { Buffer } from "page-buffer";

globalThis.Buffer ??= Buffer;
