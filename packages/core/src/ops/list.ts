// `dcp ls` and a training program's resume: the listing lives in checkpoints.ts, beside `save`.
export {
  type CheckpointListing,
  DEFAULT_LIST_DEPTH,
  type ListCheckpointsOptions,
  latestCheckpoint,
  listCheckpoints,
} from "../checkpoints.js";
