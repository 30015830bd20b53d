import { createLocalProcessGroups, type ProcessGroup } from "@dcpjs/core";
import { fromEnv } from "@dcpjs/redis";
import * as tf from "@tensorflow/tfjs-core";
import { type TrainRunConfig, trainRanks } from "./train-rank.js";

/**
 * The body of `dcp-demo demo-train-rank`: reads its {@link TrainRunConfig} from `DCP_TRAIN_CONFIG`,
 * runs `DCP_TRAIN_RANKS` in-process ranks (or, with `RANK` / `WORLD_SIZE` / `DCPJS_REDIS_URL`,
 * one rank of a Redis group), and reports each step to its parent over IPC.
 */
export async function runTrainRankProcess(): Promise<void> {
  tf.enableProdMode();
  const config = JSON.parse(process.env.DCP_TRAIN_CONFIG ?? "{}") as TrainRunConfig;
  const redis = process.env.RANK !== undefined ? await fromEnv() : undefined;
  const groups: ProcessGroup[] = redis
    ? [redis]
    : createLocalProcessGroups(Number(process.env.DCP_TRAIN_RANKS ?? 1));
  try {
    await trainRanks(
      groups,
      config,
      (step) => process.send?.({ step }),
      (save) => process.send?.({ save }),
    );
  } finally {
    await redis?.close();
  }
}
