import { cp } from "node:fs/promises";
import { join } from "node:path";
import { FileSystemWriter, type StateDict, save } from "@dcpjs/core";
import { runPeer } from "./python-peer.js";
import { randomTensor } from "./tensors.js";

/** Where the HTTP fixtures lie under the served root, as URL paths (also paths under the root). */
export const HTTP_FIXTURES = {
  /** A DCP checkpoint saved by dcpjs (two files, a 4 MiB tensor and small ones). */
  dcpjs: "ckpt/dcpjs",
  /** A DCP checkpoint saved by PyTorch 2.13's FileSystemWriter (float32, bf16, fp16, int64 0-d). */
  torch: "ckpt/torch",
  /** The Hub repository `{org}/{repo}`: three safetensors shards and model.safetensors.index.json. */
  hubRepo: "dcpjs-test/tiny-sharded",
} as const;

/** The state dict of the dcpjs fixture (deterministic). */
export function dcpjsFixtureState(): StateDict {
  const sd: StateDict = {
    big: randomTensor("float32", [1024, 1024], 1),
    half: randomTensor("float16", [300, 64], 2),
    brain: randomTensor("bfloat16", [257, 33], 3),
    config: { lr: 0.25, name: "http" },
  };
  for (let i = 0; i < 10; i++) sd[`small${i}`] = randomTensor("int32", [1000 + i], i + 4);
  return sd;
}

/**
 * Writes the three fixtures into `root` at {@link HTTP_FIXTURES}' paths: dcpjs's save, torch's
 * dcp.save and a Hub-like sharded safetensors repository (written by the Python peer
 * test/support/python/http_fixtures.py).
 */
export async function buildHttpFixtures(root: string): Promise<void> {
  const path = join(root, HTTP_FIXTURES.dcpjs);
  await save(dcpjsFixtureState(), {
    checkpointId: path,
    storageWriter: new FileSystemWriter({ path, threadCount: 2 }),
  });
  await runPeer("http_fixtures.py", ["torch-dcp", join(root, HTTP_FIXTURES.torch)]);
  await runPeer("http_fixtures.py", ["hub-repo", join(root, HTTP_FIXTURES.hubRepo), "3", "24", "131072"]);
}

/** Copies the fixture at `fixture` (a {@link HTTP_FIXTURES} path) to `to` under the root, for a test that changes files. */
export async function copyFixture(root: string, fixture: string, to: string): Promise<string> {
  await cp(join(root, fixture), join(root, to), { recursive: true });
  return to;
}
