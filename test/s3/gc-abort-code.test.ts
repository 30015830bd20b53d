import { abortIncompleteUploads } from "@dcpjs/s3";
import { beforeAll, describe, expect, it } from "vitest";
import { freshUri, s3Env, s3Server, testClient } from "../support/s3.js";
import { runStarvedRound } from "../support/starved-round.js";

beforeAll(() => {
  Object.assign(process.env, s3Env()); // the children build their clients from the standard variables
});

describe("ABORTED only when the caller's signal fired", () => {
  it("a CPU-starved save whose multipart uploads someone else aborts (as gc does) fails IO_ERROR naming what S3 said (NoSuchUpload), never ABORTED", async () => {
    // Rounds until two had uploads aborted by the loop (almost always the first two: the loop
    // polls every 50 ms, a starved save's uploads live for seconds), at most eight.
    let abortedRounds = 0;
    for (let round = 0; round < 8 && abortedRounds < 2; round++) {
      const uri = freshUri();
      let running = true;
      // "gc": abort every incomplete upload under the checkpoint, over and over, while the save runs.
      const gc = (async () => {
        let aborted = 0;
        while (running) {
          aborted += (await abortIncompleteUploads(uri, { client: testClient() }).catch(() => [])).length;
          await new Promise((r) => setTimeout(r, 50));
        }
        return aborted;
      })();
      const { exit, result, stderr } = await runStarvedRound(uri, s3Server().endpoint, "save");
      running = false;
      const aborted = await gc;
      expect({ round, exit, stderr }).toEqual({ round, exit: "0", stderr: "" });
      expect(result).not.toMatch(/ABORTED/);
      if (aborted > 0) {
        abortedRounds++;
        // What S3 says depends on when the abort lands: NoSuchUpload, or Ceph RGW's "multipart
        // completion is already in progress" (InternalError) — an IO_ERROR either way.
        expect(result).toMatch(/^failed IO_ERROR \| .*(NoSuchUpload|InternalError)/);
      }
    }
    expect(abortedRounds).toBeGreaterThan(0);
  }, 200_000);
});
