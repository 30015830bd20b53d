import { DeleteObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { type CheckpointException, load, type Metadata, save } from "@dcpjs/core";
import type { WriteResult } from "@dcpjs/core/extend";
import { S3StorageReader, S3StorageWriter } from "@dcpjs/s3";
import { describe, expect, it } from "vitest";
import { freshUri, listKeys, testClient } from "../support/s3.js";
import { roundState, roundTarget, sameRoundState } from "../support/s3-round-state.js";

/** An S3 writer whose commit first runs `before` with the keys of this save's data files. */
function writerWith(uri: string, before: (keys: string[]) => Promise<void>): S3StorageWriter {
  const writer = new S3StorageWriter({ path: uri, client: testClient() });
  const finish = writer.finish.bind(writer);
  writer.finish = async (metadata: Metadata, results: WriteResult[][], signal?: AbortSignal) => {
    const prefix = uri.slice(5).split("/").slice(1).join("/");
    await before([...new Set(results.flat().map((r) => `${prefix}/${r.storageData.relativePath}`))]);
    return finish(metadata, results, signal);
  };
  return writer;
}

const codeOf = (e: unknown) =>
  (e as CheckpointException).failures?.[0]?.code ?? (e as { code?: string }).code;

describe("an S3 save proves its own files before it commits", () => {
  const bucketOf = (uri: string) => uri.slice(5).split("/")[0]!;
  for (const [what, damage] of [
    ["deleted", (bucket: string, key: string) => new DeleteObjectCommand({ Bucket: bucket, Key: key })],
    [
      "replaced by a shorter object",
      (bucket: string, key: string) =>
        new PutObjectCommand({ Bucket: bucket, Key: key, Body: new Uint8Array(1000) }),
    ],
  ] as const) {
    it(`a data object ${what} between its upload and the commit fails the save with SAVE_FILES_LOST; the checkpoint it would replace still loads byte-exact and nothing of the save is left`, async () => {
      const uri = freshUri();
      await save(roundState(), { storageWriter: new S3StorageWriter({ path: uri, client: testClient() }) });
      const before = await listKeys(testClient(), uri);
      let damaged = "";
      const writer = writerWith(uri, async (keys) => {
        damaged = keys[0]!;
        await testClient().send(damage(bucketOf(uri), damaged));
      });
      const next = { ...roundState(), config: { lr: 1, name: "next" } };
      const error = await save(next, { storageWriter: writer }).then(
        () => expect.unreachable("expected a rejection"),
        (e: unknown) => e,
      );
      expect(codeOf(error)).toBe("SAVE_FILES_LOST");
      const file = damaged.split("/").pop()!;
      expect(String((error as Error).message)).toContain(file);
      // The committed checkpoint is untouched: it loads byte-exact, and the save left nothing.
      const sd = roundTarget();
      await load(sd, { storageReader: new S3StorageReader({ path: uri, client: testClient() }) });
      expect(sameRoundState(sd, roundState())).toBe(true);
      expect(await listKeys(testClient(), uri)).toEqual(before);
    }, 60_000);
  }
});
