// Bench: a dcpjs checkpoint of 1 GiB+ loaded in Chromium over loopback HTTP with @dcpjs/http's
// fetch transport (8 MiB pieces, maxConnections in flight, checksums verified) vs plain `fetch` of
// the same file in ranges of the same size with the same parallelism (each `arrayBuffer()`), with
// the page's memory above its targets (CDP Runtime.getHeapUsage: JS heap + ArrayBuffer backing
// stores). Run: node --import tsx --conditions=@dcpjs/source test/browser/http-load-bench.ts
//   [--tensors N] [--tensor-mib M] [--reps R] [--connections C]
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { call, heapSampler, openHttpPage, writeIntCheckpoint } from "./http-page.js";

const MiB = 1024 * 1024;
const { values } = parseArgs({
  options: {
    tensors: { type: "string", default: "9" },
    "tensor-mib": { type: "string", default: "128" },
    reps: { type: "string", default: "3" },
    connections: { type: "string", default: "8" },
  },
});
const tensors = Number(values.tensors);
const tensorMib = Number(values["tensor-mib"]);
const reps = Number(values.reps);
const connections = Number(values.connections);

const root = await mkdtemp(join(tmpdir(), "dcpjs-http-bench-"));
const http = await (async () => {
  const specs = await writeIntCheckpoint(join(root, "ckpt"), tensors, [tensorMib / 4, MiB]);
  return { specs, page: await openHttpPage(root) };
})();
try {
  const { page, server } = http.page;
  const file = (await readdir(join(root, "ckpt"))).find((f) => f.endsWith(".distcp"))!;
  const size = (await stat(join(root, "ckpt", file))).size;
  const ranges: [string, number, number][] = [];
  for (let s = 0; s < size; s += 8 * MiB)
    ranges.push([`${server.origin}/ckpt/${file}`, s, Math.min(size, s + 8 * MiB) - 1]);
  const heap = await heapSampler(page);
  const rows: { what: string; ms: number; above: number }[] = [];
  for (let rep = 0; rep < reps; rep++) {
    // plain fetch
    let base = await heap.settled();
    heap.start();
    const plain = await call(page, "plainFetch", ranges, connections);
    rows.push({ what: "plain fetch", ms: plain.ms, above: (await heap.stop()) - base });
    // dcpjs
    await call(page, "allocate", http.specs);
    base = await heap.settled();
    heap.start();
    await call(page, "start", `${server.origin}/ckpt`, { maxConnections: connections });
    const result = await call(page, "finish");
    if (result.error) throw new Error(`${result.error.code}: ${result.error.message}`);
    rows.push({ what: "dcpjs load", ms: result.ms, above: (await heap.stop()) - base });
    if ((await call(page, "check")) !== 0)
      throw new Error("Expected the loaded tensors to match, got differences");
    await call(page, "drop");
  }
  const best = (what: string) => Math.min(...rows.filter((r) => r.what === what).map((r) => r.ms));
  const peak = (what: string) => Math.max(...rows.filter((r) => r.what === what).map((r) => r.above));
  console.log(
    `${(size / MiB).toFixed(0)} MiB in one file, ${connections} requests in flight, best of ${reps}`,
  );
  for (const what of ["plain fetch", "dcpjs load"])
    console.log(
      `${what.padEnd(12)} ${(best(what) / 1000).toFixed(2)} s  ${((size / MiB / best(what)) * 1000).toFixed(0)} MiB/s  peak memory above targets ${(peak(what) / MiB).toFixed(1)} MiB`,
    );
  console.log(
    JSON.stringify({
      bench: "browser-load",
      bytes: size,
      plainMs: Math.round(best("plain fetch")),
      dcpjsMs: Math.round(best("dcpjs load")),
      ratio: Number((best("plain fetch") / best("dcpjs load")).toFixed(3)),
      dcpjsPeakAboveTargetsMiB: Number((peak("dcpjs load") / MiB).toFixed(1)),
      plainPeakMiB: Number((peak("plain fetch") / MiB).toFixed(1)),
      runs: rows.map((r) => ({ ...r, ms: Math.round(r.ms), above: Math.round(r.above / MiB) })),
    }),
  );
} finally {
  await http.page.close();
  await rm(root, { recursive: true, force: true });
}
