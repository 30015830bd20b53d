// The FileSystemBase conformance suite (test/conformance/filesystem-conformance.ts) against
// OpfsFileSystem, run inside a page: once renaming with move(), once with the copy every browser
// has; and OPFS's own cases. The page exposes `runConformance()` and `OpfsFileSystem`.
import "./buffer-global.js";
import { OpfsFileSystem } from "@dcpjs/opfs";
import { describeFileSystemConformance } from "../../conformance/filesystem-conformance.js";
import { describeOpfsCases } from "./opfs-cases.js";
import { runRegistered } from "./vitest-in-page.js";

let folders = 0;
for (const useMove of [true, false]) {
  const fs = new OpfsFileSystem({ useMove });
  describeFileSystemConformance(
    `OPFS, rename by ${useMove ? "move()" : "copy"}`,
    () => ({ fs, root: async () => `opfs://conformance/${useMove ? "move" : "copy"}-${++folders}` }),
    { rmMissingThrows: true },
  );
  describeOpfsCases(`rename by ${useMove ? "move()" : "copy"}`, fs, () => `opfs://cases/${++folders}`);
}

Object.assign(globalThis, { runConformance: runRegistered, OpfsFileSystem });
