import {
  CheckpointError,
  isTensor,
  type LoadOptions,
  loadStateDictFromKeys,
  type SaveOptions,
  type StateDict,
  save,
  type Tensor,
  tensor,
  tensorBytes,
} from "@dcpjs/core";
import * as tf from "@tensorflow/tfjs-core";
import { type CastTensor, type TfDType, toTf } from "./tensors.js";

/** The `format` value of a checkpoint written by {@link dcpjsIOHandler}. */
export const TFJS_ARTIFACTS_FORMAT = "dcpjs.tfjs-artifacts/1";

/** The URL schemes routed to dcpjs by {@link registerDcpjsRouters}. */
export const DCPJS_SCHEMES = ["dcp://", "s3://"] as const;

/** Options of {@link dcpjsIOHandler}: how `save` and `loadStateDictFromKeys` are called. */
export interface DcpjsIOHandlerOptions {
  /** Options for the save (process group, storage writer, signal…); `checkpointId` is the handler's. */
  readonly save?: Omit<SaveOptions, "checkpointId">;
  /** Options for the load (process group, storage reader, signal…); `checkpointId` is the handler's. */
  readonly load?: Omit<LoadOptions, "checkpointId" | "planner">;
  /**
   * Receives each weight saved in another dtype than its weight spec's (a `bfloat16`, `float16`
   * or FP8 checkpoint loaded into a `float32` model), which the load casts with torch's `copy_`
   * semantics — `weight` is the weight's name in the model; with `load.strictDtype` such a weight
   * is refused (`DTYPE_MISMATCH`) instead. @default none
   */
  readonly onCast?: (cast: CastTensor & { readonly weight: string }) => void;
}

const TF_TO_DCPJS = { float32: "float32", int32: "int32", bool: "bool" } as const;

/** A checkpoint id from a routed URL: `dcp://path` is the local path `path`; `s3://…` stays. */
function checkpointIdOf(url: string): string {
  return url.startsWith("dcp://") ? url.slice("dcp://".length) : url;
}

/**
 * A TF.js `IOHandler` that saves model artifacts as a dcpjs checkpoint and loads them back, so
 * that `model.save(handler)` and `tf.loadLayersModel(handler)` go through dcpjs (verified,
 * committed last, on a folder or S3). Each weight is one tensor item of its dtype and shape
 * (quantized weights keep their stored bytes); the topology, training config and weight specs
 * are values. `includeOptimizer: true` saves the optimizer's `getWeights()` too (TF.js's own
 * format: it misses Adam's hidden accumulators — use {@link toStateDict} for exact resumes).
 *
 * @param checkpointId - a folder, `dcp://folder`, or `s3://bucket/prefix`.
 * @param options - options passed to `save` and `loadStateDictFromKeys`.
 * @returns the handler.
 * @example
 * ```ts
 * await model.save(dcpjsIOHandler("./ckpt/model"));
 * const again = await tf.loadLayersModel(dcpjsIOHandler("./ckpt/model"));
 * ```
 */
export function dcpjsIOHandler(checkpointId: string, options: DcpjsIOHandlerOptions = {}): tf.io.IOHandler {
  const id = checkpointIdOf(checkpointId);
  return {
    async save(artifacts: tf.io.ModelArtifacts): Promise<tf.io.SaveResult> {
      if (artifacts.modelTopology instanceof ArrayBuffer) {
        throw new CheckpointError(
          "INVALID_ARGUMENT",
          "Expected a JSON model topology (a LayersModel), got a binary one (a GraphModel)",
        );
      }
      const specs = artifacts.weightSpecs ?? [];
      const data = new tf.io.CompositeArrayBuffer(artifacts.weightData ?? []);
      const weights: Tensor[] = [];
      let offset = 0;
      for (const spec of specs) {
        const elements = spec.shape.reduce((a, b) => a * b, 1);
        const dtype = spec.quantization ? undefined : TF_TO_DCPJS[spec.dtype as keyof typeof TF_TO_DCPJS];
        const bytes = spec.quantization
          ? elements * (spec.quantization.dtype === "uint8" ? 1 : 2)
          : elements * (spec.dtype === "bool" ? 1 : 4);
        if (!spec.quantization && !dtype) {
          throw new CheckpointError(
            "INVALID_STATE_DICT",
            `Expected weight "${spec.name}" to be float32, int32 or bool, got ${spec.dtype}`,
          );
        }
        const raw = new Uint8Array(data.slice(offset, offset + bytes));
        offset += bytes;
        weights.push(
          dtype
            ? tensor(
                dtype,
                spec.shape,
                dtype === "bool" ? raw : new (dtype === "int32" ? Int32Array : Float32Array)(raw.buffer),
              )
            : tensor("uint8", [bytes], raw),
        );
      }
      const sd: StateDict = {
        format: TFJS_ARTIFACTS_FORMAT,
        modelTopology: JSON.stringify(artifacts.modelTopology ?? null),
        trainingConfig: JSON.stringify(artifacts.trainingConfig ?? null),
        userDefinedMetadata: JSON.stringify(artifacts.userDefinedMetadata ?? null),
        artifactsFormat: artifacts.format ?? null,
        generatedBy: artifacts.generatedBy ?? null,
        convertedBy: artifacts.convertedBy ?? null,
        weightSpecs: JSON.stringify(specs),
        weights,
      };
      await save(sd, { ...options.save, checkpointId: id });
      return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
    },

    async load(): Promise<tf.io.ModelArtifacts> {
      const sd = await loadStateDictFromKeys({ ...options.load, checkpointId: id });
      if (sd.format !== TFJS_ARTIFACTS_FORMAT) {
        throw new CheckpointError(
          "INVALID_STATE_DICT",
          `Expected a checkpoint written by dcpjsIOHandler (format "${TFJS_ARTIFACTS_FORMAT}"), got format ${JSON.stringify(sd.format)}`,
        );
      }
      const specs = JSON.parse(sd.weightSpecs as string) as tf.io.WeightsManifestEntry[];
      const weights = (sd.weights ?? []) as unknown[];
      if (weights.length !== specs.length || !weights.every(isTensor)) {
        throw new CheckpointError(
          "INVALID_STATE_DICT",
          `Expected ${specs.length} weight tensors, the checkpoint holds ${weights.length}`,
        );
      }
      const buffers = (weights as Tensor[]).map((t, k) => {
        const spec = specs[k]!;
        const to = TF_TO_DCPJS[spec.dtype as keyof typeof TF_TO_DCPJS] as TfDType | undefined;
        if (spec.quantization || to === undefined || t.dtype === to) return tensorBytes(t).slice().buffer;
        // Saved in another dtype (e.g. a bf16 copy of the model): cast as `dcp.load` casts.
        const value = toTf(t, `weights.${k}`, {
          to,
          ...(options.load?.strictDtype ? { strictDtype: true } : {}),
          onCast: (c) => options.onCast?.({ ...c, weight: spec.name }),
        });
        const data = value.dataSync();
        value.dispose();
        return (data as Float32Array | Int32Array | Uint8Array).slice().buffer as ArrayBuffer;
      });
      const parse = (key: string) => JSON.parse(sd[key] as string) as unknown;
      const artifacts: tf.io.ModelArtifacts = {
        modelTopology: parse("modelTopology") as object,
        weightSpecs: specs,
        weightData: tf.io.concatenateArrayBuffers(buffers),
      };
      const trainingConfig = parse("trainingConfig");
      if (trainingConfig) artifacts.trainingConfig = trainingConfig as tf.io.TrainingConfig;
      const userDefinedMetadata = parse("userDefinedMetadata");
      if (userDefinedMetadata) artifacts.userDefinedMetadata = userDefinedMetadata as Record<string, object>;
      for (const key of ["generatedBy", "convertedBy"] as const)
        if (typeof sd[key] === "string") artifacts[key] = sd[key];
      if (typeof sd.artifactsFormat === "string") artifacts.format = sd.artifactsFormat;
      return artifacts;
    },
  };
}

let registered = false;

/**
 * Routes `dcp://…` and `s3://…` URLs of `model.save(url)` and `tf.loadLayersModel(url)` to
 * {@link dcpjsIOHandler} (as TF.js's own `file://` and `indexeddb://` routers; `s3://` needs
 * `@dcpjs/s3` installed and imported once, which registers its storage backend). Importing `@dcpjs/tfjs` calls it; calling it again does nothing.
 */
export function registerDcpjsRouters(): void {
  if (registered) return;
  registered = true;
  // TF.js's routers return null for "not mine" although its type says IOHandler.
  const route = ((url: string | string[]) =>
    typeof url === "string" && DCPJS_SCHEMES.some((s) => url.startsWith(s))
      ? dcpjsIOHandler(url)
      : null) as unknown as Parameters<typeof tf.io.registerSaveRouter>[0];
  tf.io.registerSaveRouter(route);
  tf.io.registerLoadRouter(route);
}
