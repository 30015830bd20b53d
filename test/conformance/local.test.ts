import { join } from "node:path";
import { LocalFileSystem } from "@dcpjs/core";
import { describe, expect, it } from "vitest";
import { tempDir } from "../support/tmp.js";
import { describeFileSystemConformance } from "./filesystem-conformance.js";

describeFileSystemConformance(
  "LocalFileSystem",
  () => ({ fs: new LocalFileSystem(), root: () => tempDir() }),
  {
    rmMissingThrows: true,
  },
);

describe("LocalFileSystem scatter reads (readvInto)", () => {
  it("fills many buffers back to back — more than IOV_MAX, zero-length ones too — and refuses a read past the end", async () => {
    const { IOV_MAX } = await import("../../packages/core/src/storage/local-file-system.js");
    const fs = new LocalFileSystem();
    const path = join(await tempDir(), "v.bin");
    const data = Uint8Array.from({ length: 6 * IOV_MAX * 3 }, (_, i) => (i * 7 + 3) & 0xff);
    const w = await fs.createStream(path, "wb");
    await w.write(data);
    await w.close();
    const r = await fs.createStream(path, "rb");
    const sizes = Array.from({ length: 3 * IOV_MAX }, (_, i) => (i % 5 === 4 ? 0 : 3 + (i % 3)));
    const total = sizes.reduce((a, b) => a + b, 0);
    const targets = sizes.map((n) => new Uint8Array(n));
    await r.readvInto!(7, targets);
    expect(Buffer.concat(targets)).toEqual(Buffer.from(data.subarray(7, 7 + total)));
    const error = await r.readvInto!(data.length - 4, [new Uint8Array(2), new Uint8Array(4)]).catch(
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ code: "TRUNCATED" });
    await r.close();
  });
});
