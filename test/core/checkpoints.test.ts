import { mkdir, readdir, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { emptyTensor, latestCheckpoint, listCheckpoints, load, save, type Tensor, tensor } from "@dcpjs/core";
import { METADATA_FILE } from "@dcpjs/core/extend";
import { describe, expect, it } from "vitest";
import { exited, spawnTs, waitForLine } from "../support/child.js";
import { tempDir } from "../support/tmp.js";

/** Saves a one-tensor checkpoint whose values say which step it is. */
const saveStep = (id: string, step: number) =>
  save({ w: tensor("float32", [2], new Float32Array([step, -step])), step }, { checkpointId: id });

/** Sets a checkpoint's commit time (its `.metadata`'s mtime), in ms since the epoch. */
const commitAt = (id: string, ms: number) => utimes(join(id, METADATA_FILE), ms / 1000, ms / 1000);

const names = (found: readonly { id: string }[], root: string) =>
  found.map((c) => c.id.slice(root.length + 1));

describe("listCheckpoints", () => {
  it("finds checkpoints nested below the root only when recursive, down to maxDepth", async () => {
    const runs = join(await tempDir(), "runs");
    await mkdir(join(runs, "a"), { recursive: true });
    for (const step of [5, 10, 15, 20]) await saveStep(join(runs, "b", "ckpt", `step-${step}`), step);
    await saveStep(join(runs, "c"), 1);

    expect(names(await listCheckpoints(runs), runs)).toEqual(["c"]); // root and its direct sub-folders
    const deep = await listCheckpoints(runs, { recursive: true });
    expect(names(deep, runs).sort()).toEqual(
      ["b/ckpt/step-10", "b/ckpt/step-15", "b/ckpt/step-20", "b/ckpt/step-5", "c"].sort(),
    );
    expect(deep.find((c) => c.id.endsWith("step-15"))).toMatchObject({
      state: "committed",
      format: "dcpjs",
      ranks: [0],
      entries: 2,
      step: 15,
    });
    expect(names(await listCheckpoints(runs, { recursive: true, maxDepth: 2 }), runs)).toEqual(["c"]);
    const searched: string[] = [];
    await listCheckpoints(runs, { recursive: true, maxDepth: 2, onFolder: (f) => searched.push(f) });
    expect(searched.map((f) => f.slice(runs.length))).toEqual(["", "/a", "/b", "/b/ckpt", "/c"]);
    await expect(listCheckpoints(runs, { recursive: true, maxDepth: 0 })).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
    });
    expect(await listCheckpoints(join(runs, "missing"), { recursive: true })).toEqual([]);
  });

  it("sorts newest first by commit time, then by the step number in the name", async () => {
    const run = await tempDir();
    for (const step of [2, 10, 9, 1]) await saveStep(join(run, `step-${step}`), step);
    const t = Date.UTC(2026, 0, 1);
    // step-9 committed last; step-2 and step-10 in the same second (as S3 reports them): 10 before 2.
    await commitAt(join(run, "step-9"), t + 5000);
    await commitAt(join(run, "step-10"), t + 1000);
    await commitAt(join(run, "step-2"), t + 1000);
    await commitAt(join(run, "step-1"), t);
    const found = await listCheckpoints(run);
    expect(names(found, run)).toEqual(["step-9", "step-10", "step-2", "step-1"]);
    expect(found[0]!.modifiedMs).toBe(t + 5000);
    expect(await latestCheckpoint(run)).toBe(join(run, "step-9"));
  });

  it("lists committed checkpoints only, unless includeIncomplete", async () => {
    const run = await tempDir();
    await saveStep(join(run, "step-1"), 1);
    await mkdir(join(run, "step-2"));
    await writeFile(join(run, "step-2", "__0_0.0123456789ab.distcp"), new Uint8Array(100));
    expect(names(await listCheckpoints(run), run)).toEqual(["step-1"]);
    const all = await listCheckpoints(run, { includeIncomplete: true });
    expect(all.map((c) => [c.id.slice(run.length + 1), c.state, c.bytes])).toEqual([
      ["step-2", "incomplete", 100],
      ["step-1", "committed", 8 + 1], // the tensor, and the step as one msgpack byte
    ]);
  });
});

describe("a damaged checkpoint under the root", () => {
  it("is listed as damaged with its error's code, and latestCheckpoint skips it for the next newest", async () => {
    const run = join(await tempDir(), "run");
    for (const step of [5, 10, 15]) await saveStep(join(run, `step-${step}`), step);
    const t = Date.UTC(2026, 0, 1);
    for (const step of [5, 10, 15]) await commitAt(join(run, `step-${step}`), t + step * 1000);
    // The newest checkpoint's .metadata is damaged (a truncated copy, a disk error): it does not read.
    await writeFile(join(run, "step-15", METADATA_FILE), new Uint8Array([1, 2, 3]));
    await commitAt(join(run, "step-15"), t + 15_000);

    const found = await listCheckpoints(run);
    expect(found.map((c) => [c.id.slice(run.length + 1), c.state])).toEqual([
      ["step-15", "damaged"],
      ["step-10", "committed"],
      ["step-5", "committed"],
    ]);
    expect(found[0]).toMatchObject({
      error: { code: "MALFORMED_METADATA", message: expect.stringMatching(/^Malformed \.metadata/) },
      ranks: [0],
      entries: 0,
      step: 15,
      modifiedMs: t + 15_000,
    });
    expect(found[1]!.error).toBeUndefined();
    expect(await latestCheckpoint(run)).toBe(join(run, "step-10"));
    // Nested below the root too (recursive), next to a checkpoint that reads.
    const deep = await listCheckpoints(join(run, ".."), { recursive: true });
    expect(deep.filter((c) => c.state === "damaged").map((c) => c.id)).toEqual([join(run, "step-15")]);
    expect(await latestCheckpoint(join(run, ".."), { recursive: true })).toBe(join(run, "step-10"));
  });
});

describe("latestCheckpoint", () => {
  it("after a save killed mid-write (a real process) is the newest committed checkpoint, never the half one", async () => {
    const run = join(await tempDir(), "run");
    await saveStep(join(run, "step-5"), 5);
    await saveStep(join(run, "step-10"), 10);
    const half = join(run, "step-15");
    const child = spawnTs("./save-then-hang.ts", [half, "3"]);
    await waitForLine(child, /mid-write/);
    child.kill("SIGKILL");
    expect(await exited(child)).toBe("SIGKILL");
    expect((await readdir(half)).some((f) => f.endsWith(".distcp"))).toBe(true);

    const latest = await latestCheckpoint(run);
    expect(latest).toBe(join(run, "step-10"));
    const incomplete = await listCheckpoints(run, { includeIncomplete: true });
    expect(incomplete[0]).toMatchObject({ id: half, state: "incomplete", step: 15 });

    const sd = { w: emptyTensor("float32", [2]) as Tensor, step: 0 };
    await load(sd, { checkpointId: latest! });
    expect([...(sd.w.data as Float32Array)]).toEqual([10, -10]);
    expect(sd.step).toBe(10);
    expect(await latestCheckpoint(join(run, "nothing"))).toBeUndefined();
  });
});
