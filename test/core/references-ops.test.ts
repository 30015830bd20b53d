// The operations that respect references (#25): rm, gc --keep-last, cp, verify and convert on
// incremental checkpoints (items whose bytes lie in a sibling base checkpoint's files), and the
// lease/tombstone protocol between an incremental save and gc/rm (docs/format.md, "References and
// garbage collection").

import { readdir, readFile, rm, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { LocalFileSystem } from "@dcpjs/core";
import {
  collectGarbage,
  convertCheckpoint,
  copyCheckpoint,
  listCheckpoints,
  removeCheckpoint,
  verifyCheckpoint,
} from "@dcpjs/core/ops";
import { decodeMetadata } from "@dcpjs/core/testing";
import { describe, expect, it } from "vitest";
import {
  baseLeaseFile,
  leaseBase,
  REMOVING_FILE,
  referencedCheckpoints,
} from "../../packages/core/src/storage/references.js";
import { DEFAULT_REFERENCED, loadsAs, saveIncremental } from "../support/incremental-fixture.js";
import { tempDir } from "../support/tmp.js";

const files = async (dir: string) => (await readdir(dir)).sort();
const fs = () => new LocalFileSystem();

describe("leaseBase: an incremental save's hold on its base", () => {
  it("writes a lease, confirms while the base stands, and releases it", async () => {
    const run = await tempDir();
    const base = await saveIncremental(run, "a", 1);
    const lease = await leaseBase(fs(), base, "save-1");
    expect(await files(base)).toContain(baseLeaseFile("save-1"));
    await lease.confirm();
    await lease.release();
    expect(await files(base)).not.toContain(baseLeaseFile("save-1"));
    await lease.release(); // twice: no error
  });

  it("refuses (BASE_REMOVED) a base with a tombstone or that lost its .metadata, and a lease that was collected; NOT_FOUND for no base", async () => {
    const run = await tempDir();
    const base = await saveIncremental(run, "a", 1);
    await writeFile(join(base, REMOVING_FILE), "{}");
    await expect(leaseBase(fs(), base, "s")).rejects.toMatchObject({ code: "BASE_REMOVED" });
    expect(await files(base)).not.toContain(baseLeaseFile("s")); // no lease left behind
    await rm(join(base, REMOVING_FILE));
    const lease = await leaseBase(fs(), base, "s");
    await writeFile(join(base, REMOVING_FILE), "{}"); // gc decided to remove it after the lease
    await expect(lease.confirm()).rejects.toMatchObject({ code: "BASE_REMOVED" });
    await rm(join(base, REMOVING_FILE));
    await lease.confirm();
    await rm(join(base, baseLeaseFile("s"))); // collected as expired
    await expect(lease.confirm()).rejects.toMatchObject({ code: "BASE_REMOVED" });
    const again = await leaseBase(fs(), base, "t");
    await rm(join(base, ".metadata"));
    await expect(again.confirm()).rejects.toMatchObject({ code: "BASE_REMOVED" });
    await expect(leaseBase(fs(), base, "u")).rejects.toMatchObject({ code: "NOT_FOUND" });
    expect(await files(base)).not.toContain(baseLeaseFile("u"));
    await expect(leaseBase(fs(), join(run, "nothing"), "u")).rejects.toThrow(join(run, "nothing"));
    expect(await files(run)).toEqual(["a"]); // no folder made for a missing base
    await expect(leaseBase(fs(), base, "../x")).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
  });
});

describe("operations on incremental checkpoints", () => {
  it("the fixture: an incremental checkpoint references its base and loads the base's bytes", async () => {
    const run = await tempDir();
    await saveIncremental(run, "a", 1);
    const b = await saveIncremental(run, "b", 2, { name: "a" });
    expect(referencedCheckpoints(decodeMetadata(await readFile(join(b, ".metadata"))))).toEqual(["a"]);
    expect(await loadsAs(b, 2, 1)).toBe(true);
  });

  it("rm refuses a referenced checkpoint naming its referrers (nothing removed); --force removes it and names what it breaks", async () => {
    const run = await tempDir();
    const a = await saveIncremental(run, "a", 1);
    const b = await saveIncremental(run, "b", 2, { name: "a" });
    const c = await saveIncremental(run, "c", 3, { name: "a" });
    const before = await files(a);
    const refused = removeCheckpoint(a);
    await expect(refused).rejects.toMatchObject({ code: "CHECKPOINT_REFERENCED" });
    await expect(refused).rejects.toThrow(b);
    await expect(refused).rejects.toThrow(c);
    expect(await files(a)).toEqual(before); // tombstone gone too
    expect(await loadsAs(b, 2, 1)).toBe(true);
    const forced = await removeCheckpoint(a, { force: true });
    expect(forced.broken?.sort()).toEqual([b, c].sort());
    expect(await files(a)).toEqual([]);
  });

  it("rm of an incremental checkpoint removes its own files only; its base stays whole", async () => {
    const run = await tempDir();
    const a = await saveIncremental(run, "a", 1);
    const b = await saveIncremental(run, "b", 2, { name: "a" });
    const before = await files(a);
    const r = await removeCheckpoint(b);
    expect(r.broken).toBeUndefined();
    expect(await files(a)).toEqual(before);
    expect(await loadsAs(a, 1)).toBe(true);
  });

  it("rm refuses a checkpoint an in-flight save holds a live lease on; an expired lease does not hold it", async () => {
    const run = await tempDir();
    const a = await saveIncremental(run, "a", 1);
    const lease = await leaseBase(fs(), a, "inflight");
    await expect(removeCheckpoint(a)).rejects.toMatchObject({ code: "CHECKPOINT_REFERENCED" });
    await expect(removeCheckpoint(a)).rejects.toThrow(/inflight/);
    expect(await loadsAs(a, 1)).toBe(true);
    await new Promise((r) => setTimeout(r, 20));
    await removeCheckpoint(a, { leaseGraceMs: 10 });
    await expect(lease.confirm()).rejects.toMatchObject({ code: "BASE_REMOVED" });
  });

  it("gc --keep-last keeps the checkpoints the kept ones reference (whole), removes the rest, referrers first", async () => {
    const run = await tempDir();
    const a = await saveIncremental(run, "a", 1);
    const b = await saveIncremental(run, "b", 2, { name: "a" });
    const c = await saveIncremental(run, "c", 3);
    const d = await saveIncremental(run, "d", 4, { name: "b" }); // flat: w0…w7 still reference a
    const e = await saveIncremental(run, "e", 5, { name: "d", fqns: ["w0", "w1", "w2", "w3", "w8"] });
    for (const [i, p] of [a, b, c, d, e].entries()) {
      const t = new Date(Date.UTC(2026, 0, 1, 0, i));
      await utimes(join(p, ".metadata"), t, t);
    }
    const dry = await collectGarbage(run, { keepLast: 1, dryRun: true });
    expect(dry.removed.sort()).toEqual([b, c]);
    const r = await collectGarbage(run, { keepLast: 1 });
    expect(r.removed.sort()).toEqual([b, c]);
    const left = await listCheckpoints(run);
    expect(left.map((x) => x.id).sort()).toEqual([a, d, e]);
    expect(await loadsAs(a, 1)).toBe(true);
    expect(await loadsAs(d, 4, 1)).toBe(true);
    for (const x of [a, d, e]) expect(await files(x)).not.toContain(REMOVING_FILE);
    const sd = await verifyCheckpoint(e);
    expect(sd.damaged).toEqual([]);
  });

  it("gc --keep-last keeps an older checkpoint an in-flight incremental save leases", async () => {
    const run = await tempDir();
    const a = await saveIncremental(run, "a", 1);
    const b = await saveIncremental(run, "b", 2);
    const t = new Date(Date.UTC(2026, 0, 1));
    await utimes(join(a, ".metadata"), t, t);
    const lease = await leaseBase(fs(), a, "step-3");
    expect((await collectGarbage(run, { keepLast: 1 })).removed).toEqual([]);
    await lease.confirm(); // not tombstoned: the save may commit against it
    await lease.release();
    expect((await collectGarbage(run, { keepLast: 1 })).removed).toEqual([a]);
    expect(await loadsAs(b, 2)).toBe(true);
  });

  it("gc of a folder keeps a data file its own .metadata lost but a sibling references, and collects expired leases and stale tombstones", async () => {
    const run = await tempDir();
    const a = await saveIncremental(run, "a", 1);
    const b = await saveIncremental(run, "b", 2, { name: "a" });
    // `a` saved over (another save's files and .metadata): its old files are b's bytes still.
    const old = (await files(a)).filter((f) => f.endsWith(".distcp"));
    await saveIncremental(join(run, "tmp"), "a", 7);
    for (const f of await files(join(run, "tmp", "a")))
      await writeFile(join(a, f), await readFile(join(run, "tmp", "a", f)));
    await rm(join(run, "tmp"), { recursive: true });
    await writeFile(join(a, baseLeaseFile("dead")), "{}");
    await writeFile(join(a, REMOVING_FILE), "{}");
    // left a minute ago by a killed save and a killed gc: past a 1 s grace, whatever the clocks' grain
    const past = new Date(Date.now() - 60_000);
    for (const f of [baseLeaseFile("dead"), REMOVING_FILE]) await utimes(join(a, f), past, past);
    const r = await collectGarbage(a, { graceMs: 0, leaseGraceMs: 1_000 });
    expect(r.removed.sort()).toEqual([REMOVING_FILE, baseLeaseFile("dead")].sort());
    for (const f of old) expect(await files(a)).toContain(f);
    expect(await loadsAs(b, 2, 1)).toBe(true);
  });

  it("cp copies an incremental checkpoint self-contained: references rewritten, bytes and checksums unchanged", async () => {
    const run = await tempDir();
    await saveIncremental(run, "a", 1);
    const b = await saveIncremental(run, "b", 2, { name: "a" });
    const dst = join(await tempDir(), "solo");
    const r = await copyCheckpoint(b, dst);
    expect(r.bases).toEqual(["a"]);
    const mine = decodeMetadata(await readFile(join(dst, ".metadata")));
    const theirs = decodeMetadata(await readFile(join(b, ".metadata")));
    expect(referencedCheckpoints(mine)).toEqual([]);
    for (const [key, info] of theirs.storageData) {
      const { baseCheckpoint: _, ...rest } = info;
      expect(mine.storageData.get(key)).toEqual(rest);
    }
    await removeCheckpoint(join(run, "a"), { force: true }); // the copy does not need it
    expect(await loadsAs(dst, 2, 1)).toBe(true);
    expect((await verifyCheckpoint(dst)).damaged).toEqual([]);
  });

  it("cp --keep-refs keeps the references once the base is copied beside the destination, and refuses before", async () => {
    const run = await tempDir();
    const a = await saveIncremental(run, "a", 1);
    const b = await saveIncremental(run, "b", 2, { name: "a" });
    const copy = await tempDir();
    await expect(copyCheckpoint(b, join(copy, "b"), { keepRefs: true })).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
    });
    expect(await files(copy)).toEqual([]);
    await copyCheckpoint(a, join(copy, "a"));
    const r = await copyCheckpoint(b, join(copy, "b"), { keepRefs: true });
    expect(r.bases).toEqual(["a"]);
    expect(await readFile(join(copy, "b", ".metadata"))).toEqual(await readFile(join(b, ".metadata")));
    const own = [...decodeMetadata(await readFile(join(b, ".metadata"))).storageData.values()]
      .filter((i) => i.baseCheckpoint === undefined)
      .map((i) => i.relativePath);
    expect((await files(join(copy, "b"))).filter((f) => f.endsWith(".distcp"))).toEqual(
      [...new Set(own)].sort(),
    );
    expect(await loadsAs(join(copy, "b"), 2, 1)).toBe(true);
    await expect(removeCheckpoint(join(copy, "a"))).rejects.toMatchObject({ code: "CHECKPOINT_REFERENCED" });
  });

  it("verify follows references: the base's bytes are checked, and a damaged one is named with the base's file", async () => {
    const run = await tempDir();
    const a = await saveIncremental(run, "a", 1);
    const b = await saveIncremental(run, "b", 2, { name: "a" });
    const ok = await verifyCheckpoint(b);
    expect(ok.damaged).toEqual([]);
    expect(ok.checked).toBe(17);
    const md = decodeMetadata(await readFile(join(b, ".metadata")));
    const w0 = [...md.storageData].find(([k]) => k.startsWith("w0\u0000"))![1];
    expect(w0.baseCheckpoint).toBe("a");
    const file = join(a, w0.relativePath);
    const bytes = await readFile(file);
    bytes[w0.offset + 10]! ^= 0x40;
    await writeFile(file, bytes);
    const bad = await verifyCheckpoint(b);
    expect(bad.damaged.map((d) => d.fqn)).toEqual(["w0"]);
    expect(bad.damaged[0]!.code).toBe("CHECKSUM_MISMATCH");
    expect(bad.damaged[0]!.message).toContain(join("a", w0.relativePath));
  });

  it("convert --to torch|safetensors|dcpjs materialises the references (reads through them)", async () => {
    const run = await tempDir();
    await saveIncremental(run, "a", 1);
    const b = await saveIncremental(run, "b", 2, { name: "a" });
    for (const to of ["torch", "safetensors", "dcpjs"] as const) {
      const out = join(await tempDir(), to);
      await convertCheckpoint(b, out, { to });
      expect(await loadsAs(out, 2, 1, DEFAULT_REFERENCED, { tensorsOnly: to === "safetensors" })).toBe(true);
    }
  });
});
