// A fresh process that imports @dcpjs/core, saves and loads a small tensor in a local folder, and
// reports the read cache's libraries (cacache, proper-lockfile) it loaded meanwhile: none — they
// are imported on a ReadCache's first use, not with the package (what a fresh process pays).
import { createRequire } from "node:module";
import { emptyTensor, load, save, tensor } from "@dcpjs/core";

const [dir] = process.argv.slice(2) as [string];
const require = createRequire(import.meta.url);
const cacheLibraries = () =>
  Object.keys(require.cache).filter((k) => /[/\\](cacache|proper-lockfile)[/\\]/.test(k));
const atImport = cacheLibraries().length;
const w = tensor("float32", [256, 256]);
(w.data as Float32Array).fill(2.5);
await save({ w }, { checkpointId: dir });
const target = { w: emptyTensor("float32", [256, 256]) };
await load(target, { checkpointId: dir });
console.log(
  `cache libraries: at import ${atImport} after a load ${cacheLibraries().length} ok ${(target.w.data as Float32Array).every((x) => x === 2.5)}`,
);
