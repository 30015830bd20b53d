import { mkdir, readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { load, save, tensorBytes } from "@dcpjs/core";
import { createXXHash128 } from "hash-wasm";
import { bestOf, type Row, report, timed } from "./report.js";
import { emptyLike, float32StateDict } from "./state.js";

/** Parameters of {@link incremental}. */
export interface IncrementalParams {
  /** Tensors in the state dict. */
  readonly tensors: number;
  /** MiB per tensor. */
  readonly tensorMib: number;
  /** Percent of the tensors changed between the saves. */
  readonly changedPercent: number;
  /** Repetitions (best of N). */
  readonly reps: number;
  /** Scratch folder. */
  readonly dir: string;
}

/** Bytes of the data files a checkpoint folder holds itself (what its save wrote). */
async function dataBytes(dir: string): Promise<number> {
  let bytes = 0;
  for (const f of await readdir(dir)) if (f.endsWith(".distcp")) bytes += (await stat(join(dir, f))).size;
  return bytes;
}

/**
 * `incremental`: a state of `tensors` × `tensorMib` MiB float32 tensors in shared memory (as
 * `emptyTensor` and `asyncSave`'s staging hold them) saved in full, then — after one byte of
 * `changedPercent` of the tensors changed — saved again against it: hashed (every item's
 * XXH3-128 compared with the base's, on the checksum workers) and with the unchanged items
 * declared (`unchanged`, no hashing); bytes written and seconds against the full save, and the
 * warm load of the incremental checkpoint (through its references) against the full one's. Plus
 * the content hash's throughput on the calling thread (hash-wasm's XXH3-128, 64 MiB).
 */
export async function incremental(p: IncrementalParams): Promise<void> {
  const { reps, dir } = p;
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const { stateDict, bytes } = float32StateDict(p.tensors, p.tensorMib);
  const names = Object.keys(stateDict);
  // The changed tensors, spread evenly: round(n × percent / 100) of them, at least one.
  const count = Math.min(names.length, Math.max(1, Math.round((names.length * p.changedPercent) / 100)));
  const changed = Array.from({ length: count }, (_, k) => names[Math.floor((k * names.length) / count)]!);
  const unchanged = names.filter((n) => !changed.includes(n));
  const id = (name: string, rep: number) => join(dir, `${name}-${rep}`);

  let fullBytes = 0;
  let hashedBytes = 0;
  let declaredBytes = 0;
  let full = Number.POSITIVE_INFINITY;
  let hashed = Number.POSITIVE_INFINITY;
  let declared = Number.POSITIVE_INFINITY;
  // The sides take turns rep by rep: a full save, the changes (the first byte of each changed
  // tensor flipped), the two incremental saves against it, and the changes undone for the next rep.
  const change = () => {
    for (const name of changed) tensorBytes(stateDict[name]!)[0]! ^= 0xff;
  };
  for (let rep = 0; rep < reps; rep++) {
    full = Math.min(full, await timed(() => save(stateDict, { checkpointId: id("full", rep) })));
    fullBytes = await dataBytes(id("full", rep));
    change();
    const base = id("full", rep);
    hashed = Math.min(hashed, await timed(() => save(stateDict, { checkpointId: id("hashed", rep), base })));
    hashedBytes = await dataBytes(id("hashed", rep));
    declared = Math.min(
      declared,
      await timed(() => save(stateDict, { checkpointId: id("declared", rep), base, unchanged })),
    );
    declaredBytes = await dataBytes(id("declared", rep));
    if (rep < reps - 1) change();
  }
  // Warm loads, taking turns (the page cache holds both: what a restart right after the saves sees).
  const target = emptyLike(stateDict);
  let loadFull = Number.POSITIVE_INFINITY;
  let loadIncremental = Number.POSITIVE_INFINITY;
  for (let rep = 0; rep < reps; rep++) {
    loadFull = Math.min(loadFull, await timed(() => load(target, { checkpointId: id("full", 0) })));
    loadIncremental = Math.min(
      loadIncremental,
      await timed(() => load(target, { checkpointId: id("hashed", 0) })),
    );
  }
  // The content hash alone, on this thread.
  const hasher = await createXXHash128();
  const sample = tensorBytes(stateDict[names[0]!]!).subarray(0, Math.min(64 * 1024 * 1024, bytes));
  const hashSeconds = await bestOf(reps, () =>
    timed(async () => {
      hasher.init();
      hasher.update(sample);
      hasher.digest("hex");
    }),
  );

  const rows: Row[] = [
    { name: "full save", bytes, seconds: full, extra: { "written MB": (fullBytes / 1e6).toFixed(1) } },
    {
      name: `incremental save, hashed (${changed.length} of ${names.length} changed)`,
      bytes,
      seconds: hashed,
      extra: { "written MB": (hashedBytes / 1e6).toFixed(1) },
    },
    {
      name: "incremental save, unchanged declared",
      bytes,
      seconds: declared,
      extra: { "written MB": (declaredBytes / 1e6).toFixed(1) },
    },
    { name: "load full (warm)", bytes, seconds: loadFull },
    { name: "load incremental (warm, through references)", bytes, seconds: loadIncremental },
    { name: "XXH3-128 (hash-wasm), one thread", bytes: sample.byteLength, seconds: hashSeconds },
  ];
  report(
    "incremental",
    { tensors: p.tensors, tensorMib: p.tensorMib, changedPercent: p.changedPercent, reps },
    rows,
    {
      "written bytes, hashed ÷ full (≤ 0.12)": hashedBytes / fullBytes,
      "save time, declared ÷ full (≤ 0.2)": declared / full,
      "save time, hashed ÷ full (≤ 0.5)": hashed / full,
      "load throughput, incremental ÷ full (≥ 0.9)": loadFull / loadIncremental,
    },
    ["tensors in shared memory (emptyTensor): items of 1 MiB or more are hashed on the checksum workers"],
  );
  await rm(dir, { recursive: true, force: true });
}
