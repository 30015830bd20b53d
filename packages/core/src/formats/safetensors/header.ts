import { CheckpointError, MetadataError } from "../../errors.js";
import { DecodeBudget, decodeGuarded } from "../../model/decode-budget.js";
import { DTYPE_BYTES, type DType } from "../../model/dtype.js";

/** Bytes of the little-endian u64 that starts a safetensors file (the header's length). */
export const SAFETENSORS_PREFIX_BYTES = 8;
/** Largest header accepted, as the safetensors library: 100 MB. */
export const MAX_SAFETENSORS_HEADER_BYTES = 100_000_000;

/**
 * safetensors dtype names → dcpjs (torch) dtypes: all 22 of safetensors 0.8's `Dtype` enum, named
 * as `safetensors/torch.py` maps them (`F8_E8M0` → `float8_e8m0fnu`, `F4` → `float4_e2m1fn_x2`);
 * the FP6 types, which torch lacks, as `float6_e2m3fn_x4` / `float6_e3m2fn_x4`.
 */
export const SAFETENSORS_DTYPES: Readonly<Record<string, DType>> = {
  F64: "float64",
  F32: "float32",
  F16: "float16",
  BF16: "bfloat16",
  I64: "int64",
  I32: "int32",
  I16: "int16",
  I8: "int8",
  U8: "uint8",
  BOOL: "bool",
  U16: "uint16",
  U32: "uint32",
  U64: "uint64",
  C64: "complex64",
  F8_E4M3: "float8_e4m3fn",
  F8_E4M3FNUZ: "float8_e4m3fnuz",
  F8_E5M2: "float8_e5m2",
  F8_E5M2FNUZ: "float8_e5m2fnuz",
  F8_E8M0: "float8_e8m0fnu",
  F4: "float4_e2m1fn_x2",
  F6_E2M3: "float6_e2m3fn_x4",
  F6_E3M2: "float6_e3m2fn_x4",
};

/**
 * The safetensors name of each dcpjs dtype that safetensors has (all but `complex32` and
 * `complex128`).
 */
export const DTYPE_TO_SAFETENSORS: Readonly<Partial<Record<DType, string>>> = Object.fromEntries(
  Object.entries(SAFETENSORS_DTYPES).map(([k, v]) => [v, k]),
) as Partial<Record<DType, string>>;

/**
 * Values per dcpjs element of the packed sub-byte dtypes, whose safetensors shape counts values
 * where torch's (and dcpjs's) counts packed elements: the last dimension differs by this factor
 * (an `F4` tensor of shape `[4, 6]` is `float4_e2m1fn_x2` `[4, 3]`, as `safetensors/torch.py`).
 */
export const SAFETENSORS_VALUES_PER_ELEMENT: Readonly<Partial<Record<DType, number>>> = {
  float4_e2m1fn_x2: 2,
  float6_e2m3fn_x4: 4,
  float6_e3m2fn_x4: 4,
};

/**
 * The safetensors dtype name and shape of a dcpjs tensor (or chunk), for a header.
 *
 * @param dtype - its dtype.
 * @param shape - its shape in dcpjs elements.
 * @param fqn - its name, for errors.
 * @returns the name and the shape in values (the last dimension multiplied for packed types).
 * @throws {@link CheckpointError} `UNSUPPORTED_DTYPE` for `complex32`/`complex128` (safetensors
 * has no such type) and for a 0-d packed sub-byte tensor (its values have no last dimension).
 */
export function toSafetensors(
  dtype: DType,
  shape: readonly number[],
  fqn: string,
): { dtype: string; shape: number[] } {
  const name = DTYPE_TO_SAFETENSORS[dtype];
  if (name === undefined)
    throw new CheckpointError(
      "UNSUPPORTED_DTYPE",
      `Expected "${fqn}" to have a dtype safetensors has, got ${dtype} (save it as dcpjs or torch)`,
    );
  const k = SAFETENSORS_VALUES_PER_ELEMENT[dtype] ?? 1;
  if (k === 1) return { dtype: name, shape: [...shape] };
  if (shape.length === 0)
    throw new CheckpointError(
      "UNSUPPORTED_DTYPE",
      `Expected "${fqn}" (${dtype}) to have at least one dimension for safetensors' ${name}, got a 0-d tensor`,
    );
  return { dtype: name, shape: [...shape.slice(0, -1), shape[shape.length - 1]! * k] };
}

/** One tensor of a safetensors file, validated. */
export interface SafetensorsEntry {
  readonly name: string;
  readonly dtype: DType;
  /** In dcpjs elements: for `F4`/`F6_*`, the file's last dimension divided by the values per element. */
  readonly shape: readonly number[];
  /** Byte offset in the file (past the header) and length. */
  readonly offset: number;
  readonly length: number;
}

/** A validated safetensors header: its tensors in file order, and `__metadata__`. */
export interface SafetensorsHeader {
  readonly entries: readonly SafetensorsEntry[];
  readonly metadata: ReadonlyMap<string, string>;
  /** Where the byte buffer starts in the file: 8 + the header's length. */
  readonly dataStart: number;
}

/**
 * The top-level keys of a JSON object text, in order, duplicates included (JSON.parse keeps the
 * last of duplicates silently). Assumes the text parsed as a JSON object.
 */
function topLevelKeys(text: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      if (depth === 1 && expectKey) keys.push(JSON.parse(text.slice(i, j + 1)) as string);
      expectKey = false;
      i = j;
    } else if (c === "{" || c === "[") {
      depth++;
      expectKey = c === "{" && depth === 1;
    } else if (c === "}" || c === "]") {
      depth--;
    } else if (c === "," && depth === 1) {
      expectKey = true;
    }
  }
  return keys;
}

/**
 * Charges `budget` for JSON text before it is parsed: a node per value (each `{`, `[` and `,`
 * outside strings), its characters as bytes, and refuses nesting deeper than the budget's depth —
 * so that `JSON.parse` never builds more than the budget allows.
 */
function chargeJson(text: string, budget: DecodeBudget): void {
  budget.bytes(text.length);
  let depth = 0;
  let nodes = 1;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      i++;
      while (i < text.length && text.charCodeAt(i) !== 0x22) i += text.charCodeAt(i) === 0x5c ? 2 : 1;
    } else if (c === 0x7b || c === 0x5b) {
      budget.depth(++depth);
      nodes++;
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
    } else if (c === 0x2c) {
      nodes++;
    }
    if (nodes >= 4096) {
      budget.nodes(nodes);
      nodes = 0;
    }
  }
  budget.nodes(nodes);
}

function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/**
 * Parses and validates a safetensors header (the JSON after the 8-byte length), as the
 * safetensors library does and stricter: at most {@link MAX_SAFETENSORS_HEADER_BYTES} of UTF-8
 * JSON beginning with `{`; unique names, none `__proto__`; each tensor's dtype and shape agree
 * with its `data_offsets`; offsets in bounds, no overlap and no hole in the byte buffer;
 * `__metadata__` a map of strings.
 *
 * @param json - the header's bytes.
 * @param fileSize - the file's size in bytes.
 * @param file - the file's name, for errors.
 * @returns the tensors in file order and the metadata.
 * @throws {@link MetadataError} `MALFORMED_METADATA` saying what was expected and found, or when
 * the JSON is nested deeper or holds more values than its {@link DecodeBudget} allows (checked
 * before parsing); {@link CheckpointError} `UNSUPPORTED_DTYPE` naming the tensor for an `F4`/`F6`
 * tensor whose last dimension does not split into whole packed elements.
 */
export function parseSafetensorsHeader(json: Uint8Array, fileSize: number, file: string): SafetensorsHeader {
  const what = `safetensors file ${file}`;
  return decodeGuarded(what, () =>
    parseWithin(json, fileSize, file, new DecodeBudget(what, json.byteLength)),
  );
}

function parseWithin(
  json: Uint8Array,
  fileSize: number,
  file: string,
  budget: DecodeBudget,
): SafetensorsHeader {
  const fail = (message: string): never => {
    throw new MetadataError(`Malformed safetensors file ${file}: ${message}`);
  };
  if (json.byteLength > MAX_SAFETENSORS_HEADER_BYTES)
    fail(`expected a header of at most ${MAX_SAFETENSORS_HEADER_BYTES} bytes, got ${json.byteLength}`);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(json);
  } catch {
    return fail("expected the header to be UTF-8");
  }
  if (!text.startsWith("{"))
    fail(`expected the header to begin with "{", got ${JSON.stringify(text.slice(0, 8))}`);
  chargeJson(text, budget);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return fail("expected the header to be JSON");
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return fail("expected a JSON object");
  const names = topLevelKeys(text);
  const seen = new Set<string>();
  for (const n of names) {
    if (seen.has(n)) fail(`duplicate tensor name ${JSON.stringify(n)}`);
    if (n === "__proto__") fail(`expected tensor names other than "__proto__"`);
    seen.add(n);
  }
  const dataStart = SAFETENSORS_PREFIX_BYTES + json.byteLength;
  const bufferLength = fileSize - dataStart;
  if (bufferLength < 0) fail(`the file (${fileSize} bytes) is shorter than its header`);
  const metadata = new Map<string, string>();
  const entries: SafetensorsEntry[] = [];
  for (const name of names) {
    const value = (raw as Record<string, unknown>)[name];
    if (name === "__metadata__") {
      if (typeof value !== "object" || value === null || Array.isArray(value))
        fail("expected __metadata__ to be a map");
      for (const [k, v] of Object.entries(value as object)) {
        if (typeof v !== "string")
          fail(`expected __metadata__ values to be strings, ${JSON.stringify(k)} is not`);
        metadata.set(k, v as string);
      }
      continue;
    }
    const e = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e !== "object" || e === null) fail(`expected an object for tensor ${JSON.stringify(name)}`);
    const dtype =
      typeof e.dtype === "string" && Object.hasOwn(SAFETENSORS_DTYPES, e.dtype)
        ? SAFETENSORS_DTYPES[e.dtype]
        : undefined;
    if (!dtype)
      fail(`expected a safetensors dtype for ${JSON.stringify(name)}, got ${JSON.stringify(e.dtype)}`);
    if (!Array.isArray(e.shape) || !e.shape.every(isCount) || e.shape.length > 64)
      fail(`expected the shape of ${JSON.stringify(name)} to be a list of non-negative integers`);
    const offsets = e.data_offsets;
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every(isCount) ||
      offsets[0]! > offsets[1]!
    )
      fail(`expected data_offsets of ${JSON.stringify(name)} to be [begin, end] with begin <= end`);
    const values = e.shape as number[];
    const [begin, end] = offsets as [number, number];
    const k = SAFETENSORS_VALUES_PER_ELEMENT[dtype!] ?? 1;
    if (k > 1 && (values.length === 0 || values[values.length - 1]! % k !== 0))
      throw new CheckpointError(
        "UNSUPPORTED_DTYPE",
        `Expected the last dimension of ${JSON.stringify(name)} in ${file} (${e.dtype} [${values.join(", ")}]) to be a multiple of ${k}, as dcpjs holds ${e.dtype} as ${dtype} (${k} values per element)`,
      );
    const shape = k === 1 ? values : [...values.slice(0, -1), values[values.length - 1]! / k];
    const expected = shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype!];
    if (end - begin !== expected) {
      fail(
        `${JSON.stringify(name)} is ${e.dtype} [${values.join(", ")}]: expected ${expected} bytes, data_offsets span ${end - begin}`,
      );
    }
    if (end > bufferLength)
      fail(`${JSON.stringify(name)} ends at byte ${end} of a ${bufferLength}-byte buffer`);
    entries.push({ name, dtype: dtype!, shape, offset: dataStart + begin, length: end - begin });
  }
  const sorted = [...entries].sort((a, b) => a.offset - b.offset || a.length - b.length);
  let at = dataStart;
  for (const e of sorted) {
    if (e.offset < at) fail(`${JSON.stringify(e.name)} overlaps the tensor before it`);
    if (e.offset > at) fail(`the bytes before ${JSON.stringify(e.name)} belong to no tensor (a hole)`);
    at = e.offset + e.length;
  }
  if (at !== fileSize) fail(`the last ${fileSize - at} bytes belong to no tensor`);
  return { entries, metadata, dataStart };
}
