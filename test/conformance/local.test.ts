import { LocalFileSystem } from "@dcpjs/core";
import { tempDir } from "../support/tmp.js";
import { describeFileSystemConformance } from "./filesystem-conformance.js";

describeFileSystemConformance(
  "LocalFileSystem",
  () => ({ fs: new LocalFileSystem(), root: () => tempDir() }),
  {
    rmMissingThrows: true,
  },
);
