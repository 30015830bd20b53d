// Interim browser stand-in for node:crypto's randomUUID (Web Crypto's, in a secure context).
export const randomUUID = () => globalThis.crypto.randomUUID();
/** The read cache's hashes: the read cache is Node-only (a machine-local folder). */
export function createHash() {
  throw new Error("Expected a Node.js environment for createHash (the read cache), got a browser page");
}
