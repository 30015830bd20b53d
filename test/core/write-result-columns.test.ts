import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  DefaultSavePlanner,
  FileSystemWriter,
  load,
  type StateDict,
  shardTensor,
  type Tensor,
  tensor,
} from "@dcpjs/core";
import {
  decodeWriteResults,
  encodeWriteResults,
  type SavePlan,
  savePlanColumns,
  type WriteResult,
  withWriteResults,
  writeResultColumns,
  writeResultsView,
} from "@dcpjs/core/extend";
import { afterEach, describe, expect, it } from "vitest";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A state dict of tensors, a shard, a 0-d tensor and values. */
function stateDict(n: number): StateDict {
  const sd: StateDict = { step: 7, meta: { name: "run" } };
  for (let i = 0; i < n; i++) {
    const t = tensor("float32", [4]);
    (t.data as Float32Array).fill(i + 0.5);
    sd[`layers.${i}.w`] = t;
  }
  const big = tensor("int16", [6, 3]);
  (big.data as Int16Array).forEach((_, k, a) => {
    a[k] = k;
  });
  sd.sharded = shardTensor(big, { rank: 0, worldSize: 1 });
  sd.scalar = tensor("float64", []);
  return sd;
}

/** One rank's write step with the plan's columns kept (as a planner whose `finishPlan` keeps them). */
async function writeColumnar(sd: StateDict, options: { workerMinBytes?: number; threadCount?: number }) {
  const dir = mkdtempSync(join(tmpdir(), "dcpjs-wrc-"));
  dirs.push(dir);
  const writer = new FileSystemWriter({ path: dir, ...options });
  const planner = new DefaultSavePlanner();
  writer.reset(dir);
  planner.setUpPlanner(sd);
  writer.setUpStorageWriter({ isCoordinator: true, rank: 0, worldSize: 1 });
  const local = await writer.prepareLocalPlan(planner.createLocalPlan());
  const global = planner.createGlobalPlan([local]);
  const plan: SavePlan = writer.prepareGlobalPlan([...global.plans])[0]!;
  expect(savePlanColumns(plan)).toBeDefined();
  const results = await writer.writeData(plan, planner);
  return { dir, writer, plan, planner, results, metadata: global.metadata };
}

describe("write results as columns", () => {
  for (const workerMinBytes of [0, Number.POSITIVE_INFINITY])
    it(`a plan over columns is written by position, its results a view equal to the objects' (workerMinBytes ${workerMinBytes})`, async () => {
      const sd = stateDict(300);
      const { plan, planner, results, metadata, writer, dir } = await writeColumnar(sd, {
        workerMinBytes,
        threadCount: 2,
      });
      const columns = writeResultColumns(results);
      expect(columns).toBeDefined();
      // The same plan as WriteItem objects, written by the objects' path: the same results.
      const again = mkdtempSync(join(tmpdir(), "dcpjs-wrc-"));
      dirs.push(again);
      const objectWriter = new FileSystemWriter({ path: again, workerMinBytes, threadCount: 2 });
      objectWriter.reset(again);
      objectWriter.setUpStorageWriter({ isCoordinator: true, rank: 0, worldSize: 1 });
      const objects: WriteResult[] = await objectWriter.writeData(
        { ...plan, items: Array.from(plan.items) },
        planner,
      );
      expect(writeResultColumns(objects)).toBeUndefined();
      const strip = (r: WriteResult) => ({
        ...r,
        storageData: {
          ...r.storageData,
          relativePath: r.storageData.relativePath.replace(/\.[0-9a-f]{12}\./, "."),
        },
      });
      expect(Array.from(results).map(strip)).toEqual(objects.map(strip));
      // The coordinator's assembly from columns equals the objects' assembly.
      const fromColumns = withWriteResults(metadata, [results]);
      const fromObjects = withWriteResults(metadata, [Array.from(results)]);
      expect([...fromColumns.storageData]).toEqual([...fromObjects.storageData]);
      // Committed and loaded back.
      await writer.finish(metadata, [results]);
      const into = stateDict(300);
      for (const [k, v] of Object.entries(into))
        if (k.startsWith("layers.")) ((v as Tensor).data as Float32Array).fill(0);
      await load(into, { checkpointId: dir });
      expect(into).toEqual(sd);
    });

  it("the results cross an encoding group as bytes and read back over the coordinator's plan alike", async () => {
    for (const workerMinBytes of [0, Number.POSITIVE_INFINITY]) {
      const { plan, results } = await writeColumnar(stateDict(50), { workerMinBytes });
      const columns = writeResultColumns(results)!;
      const bytes = encodeWriteResults(columns);
      const decoded = decodeWriteResults(bytes.slice(), savePlanColumns(plan)!);
      expect(Array.from(writeResultsView(decoded))).toEqual(Array.from(results));
      expect(() => decodeWriteResults(bytes.subarray(0, 20), savePlanColumns(plan)!)).toThrow(
        /INVALID_PLAN|Expected/,
      );
    }
  });

  it("a view written to is no longer read as columns", async () => {
    const { results } = await writeColumnar(stateDict(3), {});
    expect(writeResultColumns(results)).toBeDefined();
    results.push(results[0]!);
    expect(writeResultColumns(results)).toBeUndefined();
  });
});
