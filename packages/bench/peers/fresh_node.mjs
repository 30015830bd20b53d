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
import { readFileSync } from "node:fs";
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

const cpu0 = process.cpuUsage();
const t0 = performance.now();
await operation();
const seconds = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(cpu0);
console.log(
  JSON.stringify({
    seconds,
    prep: (t0 - scriptStart) / 1000,
    startup: t0 / 1000,
    cpu: (cpu.user + cpu.system) / 1e6,
  }),
);
