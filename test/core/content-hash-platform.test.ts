// The content hash's two implementations (issue #28): Node.js hashes with xxhash-addon's native
// XXH3-128, browsers (and Node.js where the addon has no build) with hash-wasm's — a checkpoint's
// `contentHash`es must not depend on which one ran.
import { describe, expect, it } from "vitest";
import { loadXXH128 } from "../../packages/core/src/platform/xxh128-node.js";
import { loadWasmXXH128 } from "../../packages/core/src/platform/xxh128-wasm.js";

/** Bytes that are not all alike, in shared memory as `emptyTensor`'s are. */
function pattern(length: number): Uint8Array {
  const bytes = new Uint8Array(new SharedArrayBuffer(length));
  for (let i = 0; i < length; i++) bytes[i] = (i * 2654435761) >>> 24;
  return bytes;
}

describe("XXH3-128 on Node.js and in browsers", () => {
  it("gives the same digest from the native addon and from WebAssembly, at once and in pieces", async () => {
    const native = await loadXXH128();
    const wasm = await loadWasmXXH128();
    const all = pattern(3 * 1024 * 1024 + 77);
    // XXH3's branches by input size: ≤ 16, ≤ 128, ≤ 240 bytes, then stripes and blocks.
    for (const length of [0, 1, 3, 16, 17, 128, 129, 240, 241, 1000, 16384, 1 << 20, all.length - 5]) {
      const bytes = all.subarray(5, 5 + length); // an offset view, as a tensor inside a file's buffer
      const want = wasm.hex(bytes);
      expect(want).toMatch(/^[0-9a-f]{32}$/);
      expect(native.hex(bytes)).toBe(want);
      for (const hasher of [native, wasm]) {
        const running = hasher.start();
        for (let at = 0; at < length; at += 1 << 20) running.update(bytes.subarray(at, at + (1 << 20)));
        expect(running.hex()).toBe(want);
      }
    }
  });
});
