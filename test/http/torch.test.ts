import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { loadStateDictFromKeys } from "@dcpjs/core";
import "@dcpjs/http";
import { afterEach, beforeAll, describe, it } from "vitest";
import { type HttpFileServer, startHttpFileServer } from "../support/http-file-server.js";
import { runPeer, torchPython } from "../support/python-peer.js";
import { tempDir } from "../support/tmp.js";
import { expectTorchEntries, type TorchExpected } from "../support/torch-expected.js";

type Expected = TorchExpected;

beforeAll(async () => {
  await torchPython();
}, 600_000);

let server: HttpFileServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe("PyTorch DCP checkpoints over http://", () => {
  it.each(["single", "no-collectives"] as const)(
    "%s (.metadata, or torch's per-rank __N.metadata without a listing): every entry bit-exact",
    async (mode) => {
      const root = await tempDir();
      await runPeer("torch_peer.py", ["save", join(root, "ckpt"), mode]);
      const expected = JSON.parse(await readFile(join(root, `expected-${mode}.json`), "utf8")) as Expected;
      server = await startHttpFileServer({ root });
      const sd = await loadStateDictFromKeys({ checkpointId: `${server.origin}/ckpt` });
      expectTorchEntries(sd, expected);
    },
  );
});
