import { decompress } from "fzstd";
import { CheckpointError, MetadataError } from "../../errors.js";
import { DecodeBudget, decodeGuarded } from "../../model/decode-budget.js";
import { DTYPE_BYTES, DTYPES, type DType, isDType } from "../../model/dtype.js";
import { type PickleGlobal, PyTuple, unpickle } from "./pickle-reader.js";
import { ARCHIVE_HOLE, partialArchive, readZip, verifiedMember } from "./torch-zip.js";
import { chargeZstdFrames } from "./zstd-bounds.js";

/** torch's legacy typed-storage classes (the `storage_type` of a persistent id) and their dtypes. */
const STORAGE_DTYPES: Readonly<Record<string, DType | undefined>> = {
  DoubleStorage: "float64",
  FloatStorage: "float32",
  HalfStorage: "float16",
  BFloat16Storage: "bfloat16",
  LongStorage: "int64",
  IntStorage: "int32",
  ShortStorage: "int16",
  CharStorage: "int8",
  ByteStorage: "uint8",
  BoolStorage: "bool",
  ComplexFloatStorage: "complex64",
  ComplexDoubleStorage: "complex128",
  QInt8Storage: undefined,
  QUInt8Storage: undefined,
  QInt32Storage: undefined,
  QUInt4x2Storage: undefined,
  QUInt2x4Storage: undefined,
};

/** torch's quantized storage classes and the dtype each holds. */
const QUANTIZED: Readonly<Record<string, string>> = {
  QInt8Storage: "torch.qint8",
  QUInt8Storage: "torch.quint8",
  QInt32Storage: "torch.qint32",
  QUInt4x2Storage: "torch.quint4x2",
  QUInt2x4Storage: "torch.quint2x4",
};

/** torch dtypes an item may name (`_rebuild_tensor_v3`): dcpjs's, and the quantized ones it refuses. */
const ITEM_DTYPES = [...DTYPES, "qint8", "quint8", "qint32", "quint4x2", "quint2x4"];

/** The element type of a tensor: a dcpjs dtype, or the torch name of one dcpjs cannot hold. */
type ElementType =
  | { readonly dtype: DType; readonly name?: undefined }
  | { readonly dtype?: undefined; readonly name: string };

/** A tensor as `torch._utils._rebuild_tensor_v2` describes it: a storage and a strided view of it. */
class TensorRef {
  constructor(
    readonly element: ElementType,
    readonly storage: { dtype: DType | undefined; storageType: string; bytes: Uint8Array },
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}
}

const toNumbers = (v: unknown, what: string, budget: DecodeBudget): number[] => {
  if (Array.isArray(v)) budget.nodes(v.length);
  if (!Array.isArray(v) || !v.every((x) => Number.isSafeInteger(x) && (x as number) >= 0))
    throw new MetadataError(`Malformed torch item: expected ${what} to be a tuple of non-negative integers`);
  return v as number[];
};

/** The globals a `torch.save` archive of a DCP item may name (as torch's `weights_only` allowlist). */
const ITEM_GLOBALS = new Map<string, PickleGlobal>([
  [
    "torch._utils._rebuild_tensor_v2",
    {
      call: (args, budget) => {
        const [storage, offset, size, stride] = args as unknown[];
        if (!Number.isSafeInteger(offset) || (offset as number) < 0)
          throw new MetadataError(
            "Malformed torch item: a storage offset that is not a non-negative integer",
          );
        if (typeof storage !== "object" || storage === null || !("bytes" in storage))
          throw new MetadataError("Malformed torch item: a tensor whose storage is not a persistent storage");
        const typed = storage as TensorRef["storage"];
        return new TensorRef(
          typed.dtype ? { dtype: typed.dtype } : { name: QUANTIZED[typed.storageType] ?? typed.storageType },
          typed,
          offset as number,
          toNumbers(size, "a size", budget),
          toNumbers(stride, "a stride", budget),
        );
      },
    },
  ],
  [
    // torch ≥ 2.1 for dtypes without a legacy storage class: an UntypedStorage (its size in
    // bytes) and the dtype as the 7th argument; the offset still counts elements.
    "torch._utils._rebuild_tensor_v3",
    {
      call: (args, budget) => {
        const [storage, offset, size, stride, , , dtype] = args as unknown[];
        if (!Number.isSafeInteger(offset) || (offset as number) < 0)
          throw new MetadataError(
            "Malformed torch item: a storage offset that is not a non-negative integer",
          );
        if (typeof storage !== "object" || storage === null || !("bytes" in storage))
          throw new MetadataError("Malformed torch item: a tensor whose storage is not a persistent storage");
        const name = ((dtype as PickleGlobal | undefined)?.value as { torchDtype?: string } | undefined)
          ?.torchDtype;
        if (!name) throw new MetadataError("Malformed torch item: _rebuild_tensor_v3 without a dtype");
        return new TensorRef(
          isDType(name) ? { dtype: name } : { name: `torch.${name}` },
          storage as TensorRef["storage"],
          offset as number,
          toNumbers(size, "a size", budget),
          toNumbers(stride, "a stride", budget),
        );
      },
    },
  ],
  [
    // A quantized tensor (qint8, quint8, qint32, quint4x2, quint2x4): recognised so that it is
    // refused as UNSUPPORTED_DTYPE naming its fqn and dtype, not as an unknown global.
    "torch._utils._rebuild_qtensor",
    {
      call: (args) => {
        const storage = args[0] as Partial<TensorRef["storage"]> | undefined;
        const type = typeof storage?.storageType === "string" ? storage.storageType : "";
        const name = QUANTIZED[type] ?? "a quantized dtype";
        return new TensorRef(
          { name },
          { dtype: undefined, storageType: type, bytes: new Uint8Array(0) },
          0,
          [],
          [],
        );
      },
    },
  ],
  ["torch._utils._rebuild_parameter", { call: (args) => args[0] }],
  ["collections.OrderedDict", { call: () => new Map() }],
  // The quantization schemes a _rebuild_qtensor names (inert values; the tensor is refused).
  ...["per_tensor_affine", "per_channel_affine", "per_tensor_symmetric", "per_channel_symmetric"].map(
    (q) => [`torch.${q}`, { value: { qscheme: q } }] as [string, PickleGlobal],
  ),
  ["torch.per_channel_affine_float_qparams", { value: { qscheme: "per_channel_affine_float_qparams" } }],
  ["torch.storage.UntypedStorage", { value: { storageType: "UntypedStorage", dtype: undefined } }],
  ...ITEM_DTYPES.map((d) => [`torch.${d}`, { value: { torchDtype: d } }] as [string, PickleGlobal]),
  ...Object.entries(STORAGE_DTYPES).map(
    ([name, dtype]) => [`torch.${name}`, { value: { storageType: name, dtype } }] as [string, PickleGlobal],
  ),
]);

/** What a torch item holds: a tensor's C-order bytes, or a value. */
export type TorchItem =
  | {
      readonly kind: "tensor";
      readonly dtype: DType;
      readonly shape: readonly number[];
      readonly bytes: Uint8Array;
    }
  | { readonly kind: "value"; readonly value: unknown };

/**
 * The tensor's elements in C order: a view when the stride is contiguous, else a gathered copy,
 * whose bytes are charged to `budget` before it is allocated (a zero stride repeats one element).
 */
function contiguousBytes(t: TensorRef, fqn: string, budget: DecodeBudget): Uint8Array {
  const es = DTYPE_BYTES[t.element.dtype!];
  const count = t.shape.reduce((a, b) => a * b, 1);
  if (!Number.isSafeInteger(count * es))
    throw new MetadataError(
      `Malformed torch item "${fqn}": a shape [${t.shape.join(", ")}] of more bytes than a safe integer counts`,
    );
  if (count === 0) return new Uint8Array(0);
  const last = t.offset + t.shape.reduce((sum, s, d) => sum + (s - 1) * t.stride[d]!, 0);
  if (t.stride.length !== t.shape.length || (last + 1) * es > t.storage.bytes.byteLength) {
    throw new MetadataError(`Malformed torch item "${fqn}": its view reaches beyond its storage`);
  }
  let contiguous = true;
  for (let d = t.shape.length - 1, expect = 1; d >= 0; d--) {
    if (t.shape[d] !== 1 && t.stride[d] !== expect) contiguous = false;
    expect *= t.shape[d]!;
  }
  if (contiguous) return t.storage.bytes.subarray(t.offset * es, (t.offset + count) * es);
  // A strided view (e.g. transposed): gather element by element, odometer-style.
  budget.bytes(count * es);
  budget.nodes(count);
  const out = new Uint8Array(count * es);
  const index = new Array<number>(t.shape.length).fill(0);
  for (let i = 0; i < count; i++) {
    let src = t.offset;
    for (let d = 0; d < index.length; d++) src += index[d]! * t.stride[d]!;
    out.set(t.storage.bytes.subarray(src * es, (src + 1) * es), i * es);
    for (let d = index.length - 1; d >= 0; d--) {
      if (++index[d]! < t.shape[d]!) break;
      index[d] = 0;
    }
  }
  return out;
}

/** A dict key as the property name it becomes: strings as they are, others as `String` gives. */
function keyName(k: unknown, budget: DecodeBudget): string {
  if (typeof k === "string") return k;
  if (k instanceof Uint8Array) budget.bytes(4 * k.byteLength);
  return String(k);
}

/**
 * A Python value (from a BYTE_IO item) as a JS value: tuples as arrays, dicts as null-prototype
 * objects. Every value visited is charged to `budget` — a value the memo shares, each time it is
 * reached — and every string, binary and tensor copy its bytes (they are copied or encoded again
 * downstream), so that a DAG of shared references cannot expand exponentially.
 */
function toJs(v: unknown, fqn: string, budget: DecodeBudget, depth = 0): unknown {
  budget.nodes();
  budget.depth(depth);
  if (v instanceof TensorRef) {
    if (!v.element.dtype) throw unsupported(fqn, v.element.name);
    const bytes = contiguousBytes(v, fqn, budget);
    budget.bytes(bytes.byteLength);
    return { dtype: v.element.dtype, shape: v.shape, data: new Uint8Array(bytes) };
  }
  if (typeof v === "string") budget.bytes(v.length);
  if (v instanceof Uint8Array) budget.bytes(v.byteLength);
  if (v instanceof Map) {
    const o = Object.create(null) as Record<string, unknown>;
    for (const [k, x] of v) o[keyName(k, budget)] = toJs(x, fqn, budget, depth + 1);
    return o;
  }
  if (v instanceof Set) return Array.from(v, (x) => toJs(x, fqn, budget, depth + 1));
  if (Array.isArray(v)) return Array.from(v, (x) => toJs(x, fqn, budget, depth + 1));
  if (v !== null && typeof v === "object" && !(v instanceof Uint8Array))
    throw new CheckpointError("INVALID_STATE_DICT", `Value "${fqn}" holds an object dcpjs cannot represent`);
  return v;
}

function unsupported(fqn: string, what: string): CheckpointError {
  return new CheckpointError(
    "UNSUPPORTED_DTYPE",
    `"${fqn}" is stored as ${what}, which dcpjs has no dtype for`,
  );
}

/**
 * Decodes one item of a PyTorch DCP checkpoint: a `torch.save` archive (a STORED zip) whose
 * `data.pkl` is unpickled with an allowlist (`_rebuild_tensor_v2`, the typed storage classes,
 * `OrderedDict`) and whose every member used is checked against its CRC-32 — which torch itself
 * never checks. A tensor comes back as its elements in C order (strided views gathered); any
 * other value as a JS value (int → number or bigint, tuple → array, dict → null-prototype object,
 * None → null).
 *
 * @param bytes - the item's bytes.
 * @param fqn - its entry, for errors.
 * @param where - its file and range, for errors.
 * @param budget - the decode's budget (the zip, the pickle and the walk over its value).
 * @default a new {@link DecodeBudget} for the item's size
 * @throws {@link ChecksumMismatchError} naming the fqn when a member's CRC-32 differs;
 * {@link MetadataError} for a malformed or ambiguous archive or pickle (a refused global is named),
 * one that expands beyond its budget, or anything else it would throw; `UNSUPPORTED_DTYPE` naming
 * the fqn for quantized storages and dtypes (`qint8` …).
 */
export function decodeTorchItem(
  bytes: Uint8Array,
  fqn: string,
  where: string,
  budget: DecodeBudget = new DecodeBudget(`torch item "${fqn}" in ${where}`, bytes.byteLength),
): TorchItem {
  return decodeGuarded(budget.what, () => decodeWithin(bytes, fqn, where, budget));
}

/**
 * A torch item's persistent id, `("storage", StorageType, key, location, numel)` as `torch.save`
 * pickles it: the member key of its storage and the storage type (undefined for a type the pickle
 * globals did not resolve).
 *
 * @param pid - what the pickle's `BINPERSID` carried.
 * @param fqn - the item, for messages.
 * @throws {@link MetadataError} for any other persistent id.
 */
function storageId(
  pid: unknown,
  fqn: string,
): { key: string; type: { storageType: string; dtype: DType | undefined } | undefined } {
  if (!(pid instanceof PyTuple) || pid[0] !== "storage" || typeof pid[2] !== "string")
    throw new MetadataError(`Malformed torch item "${fqn}": an unknown persistent id`);
  const type = (pid[1] as PickleGlobal | undefined)?.value as
    | { storageType: string; dtype: DType | undefined }
    | undefined;
  return { key: pid[2], type };
}

function decodeWithin(bytes: Uint8Array, fqn: string, where: string, budget: DecodeBudget): TorchItem {
  const members = readZip(bytes, `"${fqn}" in ${where}`, budget);
  const storages = new Map<string, TensorRef["storage"]>();
  const value = unpickle(verifiedMember(members, "data.pkl", fqn, where), {
    globals: ITEM_GLOBALS,
    what: budget.what,
    budget,
    persistentLoad: (pid) => {
      const { key, type } = storageId(pid, fqn);
      if (!type) throw new MetadataError(`Malformed torch item "${fqn}": a storage of an unknown type`);
      let storage = storages.get(key);
      if (!storage) {
        storage = { ...type, bytes: verifiedMember(members, `data/${key}`, fqn, where) };
        storages.set(key, storage);
      }
      return storage;
    },
  });
  if (value instanceof TensorRef) {
    if (!value.element.dtype) throw unsupported(fqn, value.element.name);
    return {
      kind: "tensor",
      dtype: value.element.dtype,
      shape: value.shape,
      bytes: contiguousBytes(value, fqn, budget),
    };
  }
  return { kind: "value", value: toJs(value, fqn, budget) };
}

/** Where a torch tensor item's payload lies in its archive, and the CRC-32 its member records. */
export interface TorchPayload {
  /** The payload's first byte in the stored item. */
  readonly offset: number;
  /** The CRC-32 the central directory records for it. */
  readonly crc32: number;
  /** Its member's name, for messages (e.g. `archive/data/0`). */
  readonly member: string;
}

/**
 * Where the tensor's bytes lie in a torch item of `length` bytes read only in part — its first and
 * last `length − payload` bytes — when they are exactly its C-order payload: the archive is
 * well-formed as far as {@link readZip} can tell without the payload (the payload's member is the
 * only one in the bytes not read), `data.pkl` passes its CRC-32 and unpickles to a tensor of
 * `dtype` and `sizes` whose storage is that member, whole, at offset 0 with C-order strides.
 * Anything else — a strided view, a storage larger than the tensor, another layout, damage —
 * gives undefined: read the item whole and decode it ({@link decodeTorchItem}), which reports
 * what is wrong. The payload itself is checked by the caller, against the returned CRC-32.
 *
 * @param head - the item's first bytes (at least as many as precede the payload).
 * @param tail - its last bytes (at least as many as follow the payload).
 * @param length - the stored item's bytes.
 * @param dtype - the entry's dtype.
 * @param sizes - the saved chunk's shape.
 * @param fqn - its entry, for the decode's budget.
 * @param where - its file and range.
 */
export function locateTorchPayload(
  head: Uint8Array,
  tail: Uint8Array,
  length: number,
  dtype: DType,
  sizes: readonly number[],
  fqn: string,
  where: string,
): TorchPayload | undefined {
  const payload = sizes.reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype];
  const budget = new DecodeBudget(`torch item "${fqn}" in ${where}`, head.byteLength + tail.byteLength);
  try {
    return decodeGuarded(budget.what, () => {
      const members = readZip(partialArchive(head, tail, length), `"${fqn}" in ${where}`, budget);
      let storage: { key: string; dtype: DType | undefined } | undefined;
      const value = unpickle(verifiedMember(members, "data.pkl", fqn, where), {
        globals: ITEM_GLOBALS,
        what: budget.what,
        budget,
        persistentLoad: (pid) => {
          const { key, type } = storageId(pid, fqn);
          if (storage && storage.key !== key)
            throw new MetadataError(`Malformed torch item "${fqn}": more than one storage`);
          storage = { key, dtype: type?.dtype };
          return { storageType: "", dtype: type?.dtype, bytes: ARCHIVE_HOLE };
        },
      });
      // The storage is one member of exactly the payload's size: it then covers every byte not read.
      const member = storage && members.get(`data/${storage.key}`);
      if (!(value instanceof TensorRef) || !member || member.size !== payload) return undefined;
      if (value.storage.dtype !== dtype || value.offset !== 0 || value.shape.length !== sizes.length)
        return undefined;
      for (let d = sizes.length - 1, expect = 1; d >= 0; d--) {
        if (value.shape[d] !== sizes[d]) return undefined;
        if (sizes[d] !== 1 && value.stride[d] !== expect) return undefined;
        expect *= sizes[d]!;
      }
      return { offset: member.start, crc32: member.crc32, member: member.name };
    });
  } catch {
    return undefined;
  }
}

/**
 * Undoes PyTorch's `stream.zstd/1` transform (a zstd frame around the item), with `fzstd` — after
 * charging `budget` the most the frames can allocate ({@link chargeZstdFrames}), so that a small
 * frame declaring gigabytes is refused before anything is allocated.
 *
 * @param bytes - the stored item.
 * @param fqn - its entry, for errors.
 * @param where - its file and range, for errors.
 * @param budget - the item's decode budget. @default a new {@link DecodeBudget} for `bytes`
 * @throws {@link MetadataError} when the bytes are not a valid zstd frame (the zip CRCs inside then
 * catch damage the frame itself does not), or may expand beyond the budget.
 */
export function unzstd(
  bytes: Uint8Array,
  fqn: string,
  where: string,
  budget: DecodeBudget = new DecodeBudget(`torch item "${fqn}" in ${where}`, bytes.byteLength),
): Uint8Array {
  chargeZstdFrames(bytes, budget);
  try {
    return decompress(bytes);
  } catch (cause) {
    throw new MetadataError(`Malformed torch item "${fqn}" in ${where}: not a valid zstd frame`, { cause });
  }
}
