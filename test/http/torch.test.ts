import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { loadStateDictFromKeys, type Tensor } from "@dcpjs/core";
import { flattenStateDict } from "@dcpjs/core/extend";
import "@dcpjs/http";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { type HttpFileServer, startHttpFileServer } from "../support/http-file-server.js";
import { runPeer, torchPython } from "../support/python-peer.js";
import { hexOf } from "../support/tensors.js";
import { tempDir } from "../support/tmp.js";

type Expected = Record<string, { dtype: string; shape: number[]; hex: string } | { value: unknown }>;

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
      const flat = flattenStateDict(sd).flat;
      for (const [fqn, e] of Object.entries(expected)) {
        const got = flat.get(fqn);
        if ("hex" in e) {
          const t = got as Tensor;
          expect({ fqn, dtype: t.dtype, shape: [...t.shape], hex: hexOf(t) }).toEqual({ fqn, ...e });
        } else {
          expect({ fqn, value: got }).toEqual({ fqn, value: e.value });
        }
      }
    },
  );
});
