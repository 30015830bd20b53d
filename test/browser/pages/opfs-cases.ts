// Cases of OpfsFileSystem's own beyond the FileSystemBase conformance suite: what the commit of a
// checkpoint relies on in OPFS.
import type { OpfsFileSystem } from "@dcpjs/opfs";
import { describe, expect, it } from "vitest";

const text = (s: string) => new TextEncoder().encode(s);

/**
 * Registers the cases for one file system.
 * @param name - its label.
 * @param fs - the file system.
 * @param root - a fresh opfs:// folder per call.
 */
export function describeOpfsCases(name: string, fs: OpfsFileSystem, root: () => string): void {
  describe(`OPFS cases: ${name}`, () => {
    it("a rename onto an existing file replaces it (the commit of .metadata over an older one)", async () => {
      const dir = root();
      const [from, to] = [fs.concatPath(dir, ".metadata.tag.tmp"), fs.concatPath(dir, ".metadata")];
      for (const [path, body] of [
        [to, "old"],
        [from, "newer"],
      ] as const) {
        const w = await fs.createStream(path, "wb");
        await w.write(text(body));
        await w.close();
      }
      await fs.rename(from, to);
      expect(await fs.exists(from)).toBe(false);
      const r = await fs.createStream(to, "rb");
      expect(new TextDecoder().decode(await r.read(0, await r.size()))).toBe("newer");
    });

    it("a file being written is not visible until close()", async () => {
      const path = fs.concatPath(root(), "data");
      const w = await fs.createStream(path, "wb");
      await w.write(text("partial"));
      const r = await fs.createStream(path, "rb");
      expect(await r.size()).toBe(0);
      await w.close();
      expect(await (await fs.createStream(path, "rb")).size()).toBe(7);
    });

    it("lists files with their sizes and sub-folders; [] for a missing folder", async () => {
      const dir = root();
      const w = await fs.createStream(fs.concatPath(dir, "sub/file"), "wb");
      await w.write(text("abc"));
      await w.close();
      const top = await fs.list(dir);
      expect(top).toEqual([{ name: "sub", folder: true, size: 0, modifiedMs: 0 }]);
      const [entry] = await fs.list(fs.concatPath(dir, "sub"));
      expect(entry).toMatchObject({ name: "file", folder: false, size: 3 });
      expect(await fs.list(fs.concatPath(dir, "missing"))).toEqual([]);
    });

    it("normalises ids and refuses '..'", () => {
      expect(fs.initPath("opfs://a//b/")).toBe("opfs://a/b");
      expect(fs.concatPath("opfs://a", "b/c")).toBe("opfs://a/b/c");
      expect(fs.validateCheckpointId("opfs://x")).toBe(true);
      expect(fs.validateCheckpointId("/tmp/x")).toBe(false);
      expect(() => fs.initPath("opfs://a/../b")).toThrow(/without "\.\."/);
    });
  });
}
