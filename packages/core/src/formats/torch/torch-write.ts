import { concatBytes } from "#platform";
import { crc32 } from "#platform/crc";
import { CheckpointError } from "../../errors.js";
import type { DType } from "../../model/dtype.js";
import { type Metadata, metadataIndexKey } from "../../plan/metadata.js";
import {
  type PickleValue,
  PyDict,
  PyGlobal,
  PyNewObj,
  PyPersistentId,
  PyReduce,
  PyTupleValue,
  pickle,
} from "./pickle-writer.js";
import { layoutZip, type ZipMemberSpec } from "./torch-zip-writer.js";

/** torch's legacy typed-storage class of each dtype that has one (`_rebuild_tensor_v2` archives). */
const STORAGE_CLASS: Readonly<Partial<Record<DType, string>>> = {
  float64: "DoubleStorage",
  float32: "FloatStorage",
  float16: "HalfStorage",
  bfloat16: "BFloat16Storage",
  int64: "LongStorage",
  int32: "IntStorage",
  int16: "ShortStorage",
  int8: "CharStorage",
  uint8: "ByteStorage",
  bool: "BoolStorage",
  complex64: "ComplexFloatStorage",
  complex128: "ComplexDoubleStorage",
};

/** dcpjs dtypes torch has no dtype for (safetensors' FP6): refused by the torch format. */
const NOT_IN_TORCH: ReadonlySet<DType> = new Set<DType>(["float6_e2m3fn_x4", "float6_e3m2fn_x4"]);

/**
 * Checks that torch has `dtype`, before it is written in the torch format.
 *
 * @param dtype - the dtype.
 * @param fqn - the tensor, for the error.
 * @throws {@link CheckpointError} `UNSUPPORTED_DTYPE` for the FP6 types, which torch lacks.
 */
export function assertTorchDtype(dtype: DType, fqn: string): void {
  if (NOT_IN_TORCH.has(dtype))
    throw new CheckpointError(
      "UNSUPPORTED_DTYPE",
      `Expected "${fqn}" to have a dtype torch has, got ${dtype} (save it as dcpjs or safetensors)`,
    );
}

const ARCHIVE = "archive";
const small = (name: string, text: string): ZipMemberSpec => {
  const data = new TextEncoder().encode(text);
  return { name: `${ARCHIVE}/${name}`, data, length: data.byteLength, crc32: crc32(data) };
};
const member = (name: string, data: Uint8Array): ZipMemberSpec => ({
  name: `${ARCHIVE}/${name}`,
  data,
  length: data.byteLength,
  crc32: crc32(data),
});

/**
 * The `torch.save(tensor)` archive of one tensor chunk, as PyTorch DCP writes each item: a STORED
 * zip with `data.pkl`, `byteorder`, the payload `data/0` aligned to 64 bytes, and `version`. As
 * torch 2.13 pickles it: `_rebuild_tensor_v2` over a legacy typed storage for the dtypes that have
 * one (float64 … bool, complex64, complex128); `_rebuild_tensor_v3` over an `UntypedStorage` with
 * the dtype named for the rest (uint16/32/64, complex32, FP8, FP4). C-order strides. The caller
 * streams `prefix`, the tensor's own bytes (no copy), then `suffix`.
 *
 * @param dtype - the chunk's dtype.
 * @param sizes - the chunk's shape.
 * @param data - its C-order bytes (only read, for the CRC-32).
 * @throws {@link CheckpointError} `UNSUPPORTED_DTYPE` for the FP6 types, which torch lacks.
 */
export function torchTensorArchive(
  dtype: DType,
  sizes: readonly number[],
  data: Uint8Array,
): { prefix: Uint8Array; suffix: Uint8Array; length: number } {
  assertTorchDtype(dtype, "a tensor");
  const numel = sizes.reduce((a, b) => a * b, 1);
  const stride = sizes.map((_, d) => sizes.slice(d + 1).reduce((a, b) => a * b, 1));
  const legacy = STORAGE_CLASS[dtype];
  const view = [0, new PyTupleValue([...sizes]), new PyTupleValue(stride), false];
  const hooks = new PyReduce(new PyGlobal("collections", "OrderedDict"), []);
  const pkl = legacy
    ? pickle(
        new PyReduce(new PyGlobal("torch._utils", "_rebuild_tensor_v2"), [
          new PyPersistentId(new PyTupleValue(["storage", new PyGlobal("torch", legacy), "0", "cpu", numel])),
          ...view,
          hooks,
        ]),
      )
    : pickle(
        new PyReduce(new PyGlobal("torch._utils", "_rebuild_tensor_v3"), [
          new PyPersistentId(
            new PyTupleValue([
              "storage",
              new PyGlobal("torch.storage", "UntypedStorage"),
              "0",
              "cpu",
              data.byteLength,
            ]),
          ),
          ...view,
          hooks,
          new PyGlobal("torch", dtype),
        ]),
      );
  return layoutZip([
    member("data.pkl", pkl),
    small("byteorder", "little"),
    { name: `${ARCHIVE}/data/0`, length: data.byteLength, crc32: crc32(data) },
    small("version", "3\n"),
  ]);
}

/**
 * The `torch.save(value)` archive of a non-tensor value (DCP's BYTE_IO items), for
 * `torch.load(weights_only=False)`: numbers with integer values as ints, bigints as ints, strings,
 * booleans, null as None, arrays as lists, plain objects as dicts, Uint8Array as bytes.
 *
 * @param value - the value.
 * @throws {@link CheckpointError} `INVALID_STATE_DICT` for what pickle cannot hold here.
 */
export function torchValueArchive(value: unknown): Uint8Array {
  const { prefix, suffix } = layoutZip([
    member("data.pkl", pickle(value as PickleValue)),
    small("byteorder", "little"),
    small("version", "3\n"),
  ]);
  return concatBytes([prefix, suffix]);
}

const META = "torch.distributed.checkpoint.metadata";
const cls = (name: string) => new PyGlobal(META, name);
const size = (dims: readonly number[]) =>
  new PyReduce(new PyGlobal("torch", "Size"), [new PyTupleValue([...dims])]);

/**
 * Encodes checkpoint metadata as the `.metadata` torch 2.6+ reads: a pickle of
 * `torch.distributed.checkpoint.metadata.Metadata` that names only the DCP metadata classes,
 * `_StorageInfo`, `torch.Size`, dtypes, `_get_layout` and `_MEM_FORMAT_ENCODING` — no `pathlib`,
 * so a restricted loader accepts it (torch itself does a raw `pickle.load`).
 *
 * @throws {@link CheckpointError} `UNSUPPORTED_DTYPE` naming a tensor of a dtype torch lacks (FP6).
 * @param metadata - the metadata, with storage data filled in.
 * @returns the file's bytes.
 */
export function encodeTorchMetadata(metadata: Metadata): Uint8Array {
  const properties = (dtype: DType) =>
    new PyNewObj(
      cls("TensorProperties"),
      new PyTupleValue([
        new PyGlobal("torch", dtype),
        new PyReduce(new PyGlobal("torch.serialization", "_get_layout"), ["torch.strided"]),
        false,
        new PyReduce(cls("_MEM_FORMAT_ENCODING"), [0]),
        false,
      ]),
    );
  const stateDict: [PickleValue, PickleValue][] = [];
  const storage: [PickleValue, PickleValue][] = [];
  for (const [fqn, e] of metadata.stateDictMetadata) {
    if (e.type === "bytes") {
      stateDict.push([fqn, new PyNewObj(cls("BytesStorageMetadata"))]);
    } else {
      assertTorchDtype(e.properties.dtype, fqn);
      stateDict.push([
        fqn,
        new PyNewObj(cls("TensorStorageMetadata"), {
          properties: properties(e.properties.dtype),
          size: size(e.size),
          chunks: e.chunks.map(
            (c) =>
              new PyNewObj(cls("ChunkStorageMetadata"), { offsets: size(c.offsets), sizes: size(c.sizes) }),
          ),
        }),
      ]);
    }
    const offsets = e.type === "bytes" ? [null] : e.chunks.map((c) => c.offsets);
    offsets.forEach((offset, index) => {
      const info = metadata.storageData.get(metadataIndexKey({ fqn, offset }));
      if (!info) return;
      const key = new PyNewObj(
        cls("MetadataIndex"),
        offset === null ? { fqn, index: null } : { fqn, offset: size(offset), index },
      );
      const value = new PyNewObj(new PyGlobal("torch.distributed.checkpoint.filesystem", "_StorageInfo"), {
        relative_path: info.relativePath,
        offset: info.offset,
        length: info.length,
      });
      storage.push([key, value]);
    });
  }
  const plannerData: [PickleValue, PickleValue][] = [...metadata.plannerData].map(([fqn, path]) => [
    fqn,
    new PyTupleValue([...path]),
  ]);
  return pickle(
    new PyNewObj(cls("Metadata"), {
      state_dict_metadata: new PyDict(stateDict),
      planner_data: new PyDict(plannerData),
      storage_data: new PyDict(storage),
      storage_meta: null,
      version: metadata.version,
    }),
  );
}
