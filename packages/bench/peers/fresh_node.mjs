// One fresh-process rep of a Node contender (packages/bench/src/fresh-process.ts starts it): it
// imports what it measures (the built `@dcpjs/core`, as users run it — no TypeScript loader),
// allocates fresh destination or source memory, runs the operation once and prints one JSON line:
// {"seconds": the operation's span, "prep": script start → span start, "startup": process start →
// span start, "cpu": this process's CPU seconds in the span}.
//
// usage: node fresh_node.mjs SPEC.json
// SPEC: {"contender": "dcpjs" | "raw", "mode": "save" | "load", "path": dcpjs checkpoint folder,
//        "threadCount": n, "keys": [...], "shapes": [[...]...],  (dcpjs: float32 tensors)
//        "files": [{"path", "sizes": [bytes...]}...]}                (raw: one stream per file)
import { randomFillSync } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { open, rm } from "node:fs/promises";

const scriptStart = performance.now();
const spec = JSON.parse(readFileSync(process.argv[2], "utf8"));

/** A 1 MiB random block repeated: memcpy-speed filling of a source outside the span. */
const PATTERN = randomFillSync(Buffer.allocUnsafeSlow(1 << 20));
function fill(bytes) {
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).fill(PATTERN);
}

/** Every file at once, one sequential stream each, moving each buffer until it is done. */
async function rawStreams(files, buffers, flags) {
  await Promise.all(
    files.map(async (f, i) => {
      const fh = await open(f.path, flags);
      let position = 0;
      for (const bytes of buffers[i]) {
        let done = 0;
        while (done < bytes.byteLength) {
          const r =
            flags === "w"
              ? (await fh.write(bytes, done, bytes.byteLength - done, position + done)).bytesWritten
              : (await fh.read(bytes, done, bytes.byteLength - done, position + done)).bytesRead;
          if (r === 0) throw new Error(`Expected ${bytes.byteLength} bytes in ${f.path}, got ${done}`);
          done += r;
        }
        position += bytes.byteLength;
      }
      if (flags === "w") await fh.sync();
      await fh.close();
    }),
  );
}

let operation;
if (spec.contender === "raw") {
  // Fresh memory: Buffer.allocUnsafeSlow leaves the pages untouched until the read writes them.
  const buffers = spec.files.map((f) => f.sizes.map((n) => Buffer.allocUnsafeSlow(n)));
  if (spec.mode === "save") {
    for (const list of buffers) for (const b of list) fill(b);
    await Promise.all(spec.files.map((f) => rm(f.path, { force: true })));
  }
  operation = () => rawStreams(spec.files, buffers, spec.mode === "save" ? "w" : "r");
} else {
  const { emptyTensor, FileSystemReader, FileSystemWriter, load, save, tensorBytes } = await import(
    "@dcpjs/core"
  );
  const sd = {};
  spec.keys.forEach((k, i) => {
    sd[k] = emptyTensor("float32", spec.shapes[i]);
  });
  if (spec.mode === "save") {
    for (const t of Object.values(sd)) fill(tensorBytes(t));
    await rm(spec.path, { recursive: true, force: true });
    operation = () =>
      save(sd, { storageWriter: new FileSystemWriter({ path: spec.path, threadCount: spec.threadCount }) });
  } else operation = () => load(sd, { storageReader: new FileSystemReader({ path: spec.path }) });
}

/**
 * CPU seconds of each thread of this process by thread id, with its name (Linux
 * `/proc/self/task/<tid>/stat`: utime + stime, in clock ticks of 10 ms); empty elsewhere.
 */
function threadTimes() {
  const times = new Map();
  let tasks = [];
  try {
    tasks = readdirSync("/proc/self/task");
  } catch {
    return times;
  }
  for (const tid of tasks) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, "utf8");
      const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      times.set(tid, { name, cpu: (Number(fields[11]) + Number(fields[12])) / 100 });
    } catch {
      // the thread exited meanwhile
    }
  }
  return times;
}

/**
 * The span's CPU seconds of each thread that spent any, from two `threadTimes`, busiest first, as
 * `name/tid` (Node 20 names its threads alike: the main thread's tid is the process id).
 */
function threadSpan(before, after) {
  const spans = [];
  for (const [tid, { name, cpu }] of after) {
    const spent = cpu - (before.get(tid)?.cpu ?? 0);
    if (spent > 0) spans.push([`${name}/${tid === String(process.pid) ? "main" : tid}`, spent]);
  }
  spans.sort((a, b) => b[1] - a[1]);
  return Object.fromEntries(spans.map(([k, v]) => [k, Math.round(v * 100) / 100]));
}

// FRESH_THREADS=1: also report the span's CPU per thread (threads that exit within it are missed).
const perThread = process.env.FRESH_THREADS === "1";
const threads0 = perThread ? threadTimes() : undefined;
const cpu0 = process.cpuUsage();
const t0 = performance.now();
await operation();
const seconds = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(cpu0);
const threads = threads0 ? threadSpan(threads0, threadTimes()) : undefined;
console.log(
  JSON.stringify({
    seconds,
    prep: (t0 - scriptStart) / 1000,
    startup: t0 / 1000,
    cpu: (cpu.user + cpu.system) / 1e6,
    ...(threads ? { threads } : {}),
  }),
);
