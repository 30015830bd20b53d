// What first touch of fresh memory costs (docs/benchmarks.md, "What a fresh process pays"): reads
// FILE in 32 MiB `read`s into one fresh `SharedArrayBuffer` of its size, then again into the same,
// now touched one, and prints the CPU milliseconds of each pass (`process.cpuUsage`: every thread)
// and the huge pages backing the process (`AnonHugePages`; run it with and without
// GLIBC_TUNABLES=glibc.malloc.hugetlb=1).
//
// usage: node fault_in.mjs FILE
import { open, readFile, stat } from "node:fs/promises";

const path = process.argv[2];
const size = (await stat(path)).size;
const fh = await open(path, "r");
const CHUNK = 32 << 20;

async function readAll(bytes) {
  for (let at = 0; at < size; at += CHUNK) {
    const view = bytes.subarray(at, Math.min(size, at + CHUNK));
    let done = 0;
    while (done < view.byteLength)
      done += (await fh.read(view, done, view.byteLength - done, at + done)).bytesRead;
  }
}

const cpuMs = () => {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1e3;
};
const bytes = new Uint8Array(new SharedArrayBuffer(size));
let c0 = cpuMs();
let t0 = performance.now();
await readAll(bytes);
const fresh = { cpuMs: cpuMs() - c0, wallMs: performance.now() - t0 };
c0 = cpuMs();
t0 = performance.now();
await readAll(bytes);
const touched = { cpuMs: cpuMs() - c0, wallMs: performance.now() - t0 };
await fh.close();
const huge = (await readFile("/proc/self/smaps_rollup", "utf8")).match(/AnonHugePages:\s+(\d+)/)?.[1];
console.log(
  JSON.stringify({
    glibcTunables: process.env.GLIBC_TUNABLES ?? null,
    fresh,
    touched,
    anonHugePagesMiB: huge === undefined ? null : Math.round(Number(huge) / 1024),
  }),
);
