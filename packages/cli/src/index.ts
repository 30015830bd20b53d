// The s3:// and http(s):// / hf:// storage backends register themselves on import: every operation takes folders and their URIs.
import "@dcpjs/http";
import "@dcpjs/s3";

export {
  describeCheckpoint,
  formatInspectTable,
  type InspectEntry,
  type InspectReport,
  inspectCheckpoint,
} from "./inspect.js";
export {
  type CheckpointListing,
  COPY_PIECE_BYTES,
  type CopyOptions,
  type CopyReport,
  collectGarbage,
  copyCheckpoint,
  type GarbageOptions,
  listCheckpoints,
  type RemovalReport,
  removeCheckpoint,
} from "./ops/checkpoint-ops.js";
export {
  type EntryChecker,
  VERIFY_BATCH_BYTES,
  type VerifyOptions,
  type VerifyReport,
  verifyCheckpoint,
} from "./verify.js";
