import { type CheckpointException, load, save } from "@dcpjs/core";
import { S3StorageReader, S3StorageWriter } from "@dcpjs/s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FaultProxy, type ProxiedRequest, startFaultProxy } from "../support/fault-proxy.js";
import { freshUri, listKeys, s3Server, testClient } from "../support/s3.js";
import { roundState, roundTarget, sameRoundState } from "../support/s3-round-state.js";

let proxy: FaultProxy;
beforeAll(async () => {
  proxy = await startFaultProxy(s3Server().endpoint);
});
afterAll(async () => {
  await proxy.close();
});

const isMetadata = (req: ProxiedRequest) => req.url.split("?")[0]!.endsWith("/.metadata");
/** The commit's requests: the HEAD of the replaced `.metadata`, the CopyObject over it, the exclusive PUT. */
const steps = {
  "the HEAD of the replaced .metadata": (req: ProxiedRequest) => req.method === "HEAD" && isMetadata(req),
  "the CopyObject over .metadata": (req: ProxiedRequest) =>
    req.method === "PUT" && isMetadata(req) && req.headers["x-amz-copy-source"] !== undefined,
  "the exclusive PUT of .metadata (overwrite: false)": (req: ProxiedRequest) =>
    req.method === "PUT" && isMetadata(req) && req.headers["if-none-match"] === "*",
};

describe("an abort settles a save stalled in its commit", () => {
  it.each(Object.entries(steps))(
    "%s stalled: the save rejects with ABORTED well before the stalled request could end (< 10 s; ~ms measured), the old checkpoint (or none) is what loads, and its files stay only if the rename may have happened",
    async (step, stalls) => {
      // Long timeouts: only the abort can end the stalled request.
      const client = testClient({ endpoint: proxy.endpoint, socketTimeoutMs: 60_000, maxAttempts: 3 });
      const uri = freshUri();
      const exclusive = step.includes("overwrite: false");
      if (!exclusive) await save(roundState(), { storageWriter: new S3StorageWriter({ path: uri, client }) });
      const dataFiles = async () => (await listKeys(testClient(), uri)).filter((k) => k.endsWith(".distcp"));
      const oldFiles = await dataFiles();
      const controller = new AbortController();
      let abortedAt: number | undefined;
      proxy.setFault((req) => {
        if (!stalls(req)) return undefined;
        setTimeout(() => {
          abortedAt = performance.now();
          controller.abort();
        }, 200);
        return "stall";
      });
      const next = { ...roundState(), config: { lr: 1, name: "next" } };
      const error = await save(next, {
        storageWriter: new S3StorageWriter({ path: uri, client, overwrite: !exclusive }),
        signal: controller.signal,
      }).catch((e: unknown) => e);
      const settledAfter = performance.now() - abortedAt!;
      proxy.setFault(() => undefined);
      expect(abortedAt).toBeDefined();
      // The failure this guards against is a hang (the stalled request ends only by its 60 s
      // socket timeout): the bound is generous so that a loaded CI machine cannot flake it. Measured,
      // the save settles 6–16 ms after the abort, under the starved-suite load (docs/s3.md: < 1 s).
      expect(settledAfter).toBeLessThan(10_000);
      expect((error as CheckpointException).failures?.[0]?.code ?? (error as { code?: string }).code).toBe(
        "ABORTED",
      );
      // Nothing committed half: the old checkpoint loads byte-exact; with none before, none loads.
      const sd = roundTarget();
      const loaded = await load(sd, {
        storageReader: new S3StorageReader({ path: uri, client: testClient() }),
      }).catch((e: unknown) => e);
      if (exclusive) {
        const code =
          (loaded as CheckpointException).failures?.[0]?.code ?? (loaded as { code?: string }).code;
        expect(["NOT_FOUND", "INCOMPLETE_CHECKPOINT"]).toContain(code);
        expect(await listKeys(testClient(), uri)).not.toContain(".metadata");
      } else expect(sameRoundState(sd, roundState())).toBe(true);
      // The tmp is gone; the save's own data files are removed when the abort came before the
      // rename, and kept when it came while the rename was in flight (it may have taken effect).
      const keys = await listKeys(testClient(), uri);
      expect(keys.filter((k) => k.includes(".metadata.") && k.endsWith(".tmp"))).toEqual([]);
      const ownFiles = (await dataFiles()).filter((f) => !oldFiles.includes(f));
      if (step.includes("HEAD")) expect(ownFiles).toEqual([]);
      else expect(ownFiles.length).toBeGreaterThan(0);
    },
    60_000,
  );
});
