import { MetadataError } from "../../errors.js";
import { DecodeBudget, decodeGuarded } from "../../model/decode-budget.js";
import { DTYPES, type DType } from "../../model/dtype.js";
import type { ObjectPath } from "../../model/state-dict.js";
import {
  type ChunkStorageMetadata,
  type Metadata,
  metadataIndexKey,
  type StorageInfo,
  type StorageMetadataEntry,
} from "../../plan/metadata.js";
import { validateMetadata } from "../validate-metadata.js";
import { type PickleGlobal, PyObject, PyTuple, unpickle } from "./pickle-reader.js";

/** PyTorch's zstd stream transform (`torch.distributed.checkpoint._extension.ZStandard`). */
export const ZSTD_TRANSFORM = "stream.zstd/1";

/** The first byte of a pickle (PROTO): PyTorch DCP's `.metadata` magic, checked by its checkpoint format. */
export const PICKLE_PROTO = 0x80;

/** torch dtypes dcpjs holds: every {@link DTYPES} entry but safetensors' FP6, which torch lacks. */
const HELD = new Set<string>(DTYPES.filter((d) => !d.startsWith("float6_")));
/** Every dtype torch 2.13 names: those dcpjs holds, and the rest, recorded as unsupported entries. */
const TORCH_DTYPES = [
  ...HELD,
  ...[
    "qint8",
    "quint8",
    "qint32",
    "quint4x2",
    "quint2x4",
    "bits8",
    "bits16",
    "bits1x8",
    "bits2x4",
    "bits4x2",
  ],
  ...["uint1", "uint2", "uint3", "uint4", "uint5", "uint6", "uint7"],
  ...["int1", "int2", "int3", "int4", "int5", "int6", "int7"],
];

/** The DCP metadata classes under the three module paths they have had (1.13, 2.0–2.5, 2.6+). */
const CLASS_PATHS: Record<string, readonly string[]> = {
  Metadata: ["torch.distributed.checkpoint.metadata", "torch.distributed._shard.checkpoint.metadata"],
  TensorStorageMetadata: [
    "torch.distributed.checkpoint.metadata",
    "torch.distributed._shard.checkpoint.metadata",
  ],
  ChunkStorageMetadata: [
    "torch.distributed.checkpoint.metadata",
    "torch.distributed._shard.checkpoint.metadata",
  ],
  BytesStorageMetadata: [
    "torch.distributed.checkpoint.metadata",
    "torch.distributed._shard.checkpoint.metadata",
  ],
  MetadataIndex: ["torch.distributed.checkpoint.metadata", "torch.distributed._shard.checkpoint.metadata"],
  StorageMeta: ["torch.distributed.checkpoint.metadata"],
  TensorProperties: [
    "torch.distributed.checkpoint.metadata",
    "torch.distributed._shard.sharded_tensor.metadata",
  ],
  _StorageInfo: ["torch.distributed.checkpoint.filesystem", "torch.distributed._shard.checkpoint.filesystem"],
};

const MEM_FORMAT = { memoryFormatEnum: true };

/** The allowlist of `.metadata` globals: the DCP classes, `torch.Size`, dtypes, layouts, memory formats, paths. */
const METADATA_GLOBALS = new Map<string, PickleGlobal>([
  ...Object.entries(CLASS_PATHS).flatMap(([name, modules]) =>
    modules.map((m) => [`${m}.${name}`, { newObject: () => new PyObject(name) }] as [string, PickleGlobal]),
  ),
  ["torch.distributed.checkpoint.metadata._MEM_FORMAT_ENCODING", { call: (args) => args[0] }],
  [
    "torch.distributed._shard.sharded_tensor.metadata.MEM_FORMAT_ENCODING",
    { value: MEM_FORMAT, call: (args) => args[0] },
  ],
  [
    "builtins.getattr",
    {
      call: (args) => {
        if ((args[0] as PickleGlobal | undefined)?.value !== MEM_FORMAT || typeof args[1] !== "string")
          throw new MetadataError("Malformed .metadata: getattr is allowed on MEM_FORMAT_ENCODING only");
        return args[1];
      },
    },
  ],
  [
    "torch.Size",
    {
      call: (args, budget) => {
        if (!Array.isArray(args[0]))
          fail(`expected torch.Size of a tuple of integers, got ${typeof args[0]}`);
        budget.nodes((args[0] as unknown[]).length);
        return [...(args[0] as unknown[])];
      },
    },
  ],
  [
    "torch.serialization._get_layout",
    {
      call: (args) =>
        typeof args[0] === "string" ? args[0] : fail(`expected a layout name, got ${typeof args[0]}`),
    },
  ],
  ...[
    "pathlib.PosixPath",
    "pathlib.PurePosixPath",
    "pathlib.WindowsPath",
    "pathlib.PureWindowsPath",
    "pathlib._local.PosixPath",
  ].map(
    (p) =>
      [
        p,
        {
          call: (args: readonly unknown[], budget: DecodeBudget) => {
            if (!args.every((a) => typeof a === "string")) fail(`expected ${p} of strings`);
            budget.bytes(args.reduce((n: number, a) => n + (a as string).length + 1, 0));
            return args.join("/").replace(/^\/\//, "/");
          },
        },
      ] as [string, PickleGlobal],
  ),
  ...TORCH_DTYPES.map((d) => [`torch.${d}`, { value: { torchDtype: d } }] as [string, PickleGlobal]),
]);

const fail = (message: string): never => {
  throw new MetadataError(`Malformed .metadata (PyTorch DCP): ${message}`);
};

function objectOf(v: unknown, cls: string, what: string): PyObject {
  if (!(v instanceof PyObject) || v.cls !== cls) fail(`expected ${what} to be a ${cls}`);
  return v as PyObject;
}

/** A dataclass's BUILD state as a Map (dict state, or `(None, slots)` for slotted classes). */
function fields(o: PyObject): Map<unknown, unknown> {
  const s = o.state instanceof PyTuple && o.state.length === 2 ? (o.state[1] ?? o.state[0]) : o.state;
  if (!(s instanceof Map)) fail(`expected the state of a ${o.cls} to be a dict`);
  return s as Map<unknown, unknown>;
}

function counts(v: unknown, what: string, budget: DecodeBudget): number[] {
  if (Array.isArray(v)) budget.nodes(v.length);
  if (!Array.isArray(v) || !v.every((x) => Number.isSafeInteger(x) && (x as number) >= 0))
    fail(`expected ${what} to be a torch.Size of non-negative integers`);
  return v as number[];
}

/** A tensor entry's dtype: one dcpjs holds, or the torch name of one it does not. */
function dtypeOf(properties: unknown, fqn: string): { dtype: DType } | { unsupported: string } {
  const p = objectOf(properties, "TensorProperties", `the properties of "${fqn}"`);
  const raw =
    p.state instanceof PyTuple ? p.state[0] : p.state instanceof Map ? p.state.get("dtype") : undefined;
  const name = ((raw as PickleGlobal | undefined)?.value as { torchDtype?: string } | undefined)?.torchDtype;
  if (!name) return fail(`expected a dtype for "${fqn}"`);
  return HELD.has(name) ? { dtype: name as DType } : { unsupported: `torch.${name}` };
}

/** What PyTorch DCP's metadata is called in messages. */
export const TORCH_METADATA_WHAT = ".metadata (PyTorch DCP)";

/**
 * Decodes and validates a PyTorch DCP `.metadata`: {@link decodeRawTorchMetadata}, then
 * `validateMetadata` (chunk bounds and tiling, storage entries, safe paths, planner paths).
 *
 * @param bytes - the file's bytes.
 * @param budget - the decode's budget. @default a new {@link DecodeBudget} for the file's size
 * @throws {@link MetadataError} as {@link decodeRawTorchMetadata} and `validateMetadata`.
 */
export function decodeTorchMetadata(
  bytes: Uint8Array,
  budget: DecodeBudget = new DecodeBudget(TORCH_METADATA_WHAT, bytes.byteLength),
): Metadata {
  return decodeGuarded(budget.what, () =>
    validateMetadata(decodeWithin(bytes, budget), { what: TORCH_METADATA_WHAT }),
  );
}

/**
 * Decodes a PyTorch DCP `.metadata` — a pickle, from torch 1.13 through 2.13 — into dcpjs's raw
 * `Metadata` (checked by `validateMetadata`), with a restricted unpickler: only the opcodes torch writes, globals only from an
 * allowlist (the DCP metadata classes under all three of their module paths, `torch.Size`,
 * dtypes, layouts, memory formats, `pathlib` paths as strings). Items are marked as `torch.save`
 * archives (verified by their zip CRC-32 when read); stream transforms (`stream.zstd/1`) are
 * refused by name.
 *
 * @param bytes - the file's bytes.
 * @param budget - the decode's budget (e.g. to see what an input used). @default a new
 * {@link DecodeBudget} for the file's size
 * @returns the metadata (`storageMeta.format` is `"torch"`).
 * @throws {@link MetadataError} `MALFORMED_METADATA` for anything outside the allowlist or the
 * expected shapes, `UNSAFE_PATH` for an escaping path. A tensor of a dtype dcpjs cannot hold
 * (quantized, `bits8` …) is left out of `stateDictMetadata` and `storageData` and recorded in
 * `unsupportedDtypes`, so that only a load asking for it fails (as DCP). Everything is decoded within one
 * {@link DecodeBudget} (values, bytes, time: {@link decodeLimits}); whatever else would escape
 * (a `RangeError`) is a `MALFORMED_METADATA` too.
 */
export function decodeRawTorchMetadata(
  bytes: Uint8Array,
  budget: DecodeBudget = new DecodeBudget(TORCH_METADATA_WHAT, bytes.byteLength),
): Metadata {
  return decodeGuarded(budget.what, () => decodeWithin(bytes, budget));
}

function decodeWithin(bytes: Uint8Array, budget: DecodeBudget): Metadata {
  const top = objectOf(
    unpickle(bytes, { globals: METADATA_GLOBALS, what: budget.what, budget }),
    "Metadata",
    "the top level",
  );
  const f = fields(top);
  const sdm = f.get("state_dict_metadata");
  if (!(sdm instanceof Map)) fail("expected state_dict_metadata to be a dict");
  const stateDictMetadata = new Map<string, StorageMetadataEntry>();
  const unsupportedDtypes = new Map<string, string>();
  for (const [fqn, entry] of sdm as Map<unknown, unknown>) {
    budget.nodes();
    if (typeof fqn !== "string") fail("expected string fqns");
    if (entry instanceof PyObject && entry.cls === "BytesStorageMetadata") {
      stateDictMetadata.set(fqn as string, { type: "bytes" });
      continue;
    }
    const e = fields(objectOf(entry, "TensorStorageMetadata", `"${fqn}"`));
    const size = counts(e.get("size"), `the size of "${fqn}"`, budget);
    const chunks = e.get("chunks");
    if (!Array.isArray(chunks)) fail(`expected a chunk list for "${fqn}"`);
    budget.nodes((chunks as unknown[]).length);
    const list: ChunkStorageMetadata[] = (chunks as unknown[]).map((c) => {
      const cf = fields(objectOf(c, "ChunkStorageMetadata", `a chunk of "${fqn}"`));
      const offsets = counts(cf.get("offsets"), `chunk offsets of "${fqn}"`, budget);
      return { offsets, sizes: counts(cf.get("sizes"), `chunk sizes of "${fqn}"`, budget) };
    });
    const held = dtypeOf(e.get("properties"), fqn as string);
    if ("unsupported" in held) {
      unsupportedDtypes.set(fqn as string, held.unsupported);
      continue;
    }
    stateDictMetadata.set(fqn as string, { type: "tensor", properties: held, size, chunks: list });
  }

  const plannerData = new Map<string, ObjectPath>();
  const pd = f.get("planner_data");
  if (pd instanceof Map) {
    for (const [fqn, path] of pd) {
      // DCP's flatten mappings are fqn → tuple of steps; anything else is not a path.
      if (typeof fqn !== "string" || !Array.isArray(path) || path.length === 0) continue;
      budget.nodes(path.length);
      plannerData.set(fqn, Array.from(path) as ObjectPath);
    }
  }

  const storageData = new Map<string, StorageInfo>();
  const sd = f.get("storage_data");
  if (!(sd instanceof Map)) fail("expected storage_data to be a dict");
  for (const [index, info] of sd as Map<unknown, unknown>) {
    const i = fields(objectOf(index, "MetadataIndex", "a storage_data key"));
    const fqn = i.get("fqn");
    const offset = i.get("offset");
    if (typeof fqn !== "string") fail("expected a MetadataIndex fqn");
    if (unsupportedDtypes.has(fqn as string)) continue;
    // Keys and storage records may all share one long fqn or path through the memo: each is
    // checked and copied into a key once per entry, so each is charged once per entry.
    budget.nodes();
    budget.bytes((fqn as string).length);
    const s = fields(objectOf(info, "_StorageInfo", `the storage of "${fqn}"`));
    const relativePath = s.get("relative_path");
    const at = s.get("offset");
    const length = s.get("length");
    if (typeof relativePath !== "string") fail(`expected a relative path for "${fqn}"`);
    budget.bytes((relativePath as string).length);
    if (
      !Number.isSafeInteger(at) ||
      !Number.isSafeInteger(length) ||
      (at as number) < 0 ||
      (length as number) < 0
    )
      fail(`expected a byte offset and length for "${fqn}"`);
    const transforms = s.get("transform_descriptors");
    const known = Array.isArray(transforms) ? transforms.filter((t) => t === ZSTD_TRANSFORM) : [];
    if (Array.isArray(transforms) && known.length !== transforms.length) {
      // Named by their top-level strings only: a nested DAG is never expanded into a message.
      const named = transforms.slice(0, 8).map((t) => (typeof t === "string" ? t.slice(0, 64) : typeof t));
      fail(
        `"${fqn}" is stored through the stream transforms ${JSON.stringify(named)}; dcpjs undoes ${ZSTD_TRANSFORM} only`,
      );
    }
    const key = metadataIndexKey({
      fqn: fqn as string,
      offset:
        offset === null || offset === undefined ? null : counts(offset, `the index of "${fqn}"`, budget),
    });
    storageData.set(key, {
      relativePath: relativePath as string,
      offset: at as number,
      length: length as number,
      itemFormat: "torch",
      ...(known.length > 0 ? { transforms: known } : {}),
    });
  }
  const version = f.get("version");
  return {
    version: typeof version === "string" ? version : "1.0.0",
    stateDictMetadata,
    plannerData,
    storageData,
    storageMeta: { format: "torch" },
    ...(unsupportedDtypes.size > 0 ? { unsupportedDtypes } : {}),
  };
}
