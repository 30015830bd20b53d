import { CheckpointError } from "../errors.js";
import type { WriteResult } from "./metadata.js";
import type { SavePlanColumns } from "./save-plan-columns.js";
import { RESULT_HASH_BYTES, type WriteResultColumns } from "./write-result-columns.js";

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();
/** The codec's first four bytes: "DWR" and its version, 1. */
const MAGIC = 0x01525744;

/**
 * A rank's write result columns as bytes, for the save's `write` step over a group that copies
 * values (the twin of `encodeSavePlan` for the plan step): the numeric columns copied as they are,
 * the file names and the results kept whole (`extra`) as JSON. The plan is not sent: the
 * coordinator holds every rank's finished plan ({@link decodeWriteResults}).
 *
 * @param c - the results.
 * @returns the bytes.
 */
export function encodeWriteResults(c: WriteResultColumns): Uint8Array {
  const n = c.items.length;
  const head = utf8.encode(JSON.stringify({ algorithm: c.algorithm, files: c.files, extra: [...c.extra] }));
  const hashBytes = c.hashes.length > 0 ? n * RESULT_HASH_BYTES : 0;
  // Header (magic, count, JSON length, hash flag), the JSON padded to 8, then 8-byte columns first.
  const jsonAt = 16;
  const columnsAt = jsonAt + Math.ceil(head.byteLength / 8) * 8;
  const total = columnsAt + n * (8 + 8 + 4 + 4 + 4 + 1) + hashBytes;
  const bytes = new Uint8Array(total);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, MAGIC, true);
  view.setUint32(4, n, true);
  view.setUint32(8, head.byteLength, true);
  view.setUint32(12, hashBytes > 0 ? 1 : 0, true);
  bytes.set(head, jsonAt);
  let at = columnsAt;
  const put = (a: ArrayBufferView) => {
    bytes.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), at);
    at += a.byteLength;
  };
  put(c.offset.subarray(0, n));
  put(c.length.subarray(0, n));
  put(c.items.subarray(0, n));
  put(c.file.subarray(0, n));
  put(c.checksums.subarray(0, n));
  put(c.hasHash.subarray(0, n));
  if (hashBytes > 0) put(c.hashes.subarray(0, hashBytes));
  return bytes;
}

/**
 * The write result columns {@link encodeWriteResults} encoded, over `plan` — the finished plan of
 * the rank that sent them, as the coordinator holds it (the same items in the same order).
 *
 * @param bytes - the encoded results.
 * @param plan - the rank's finished plan's columns.
 * @throws {@link CheckpointError} `INVALID_PLAN` when the bytes are not encoded results, or name
 * items `plan` does not have.
 */
export function decodeWriteResults(bytes: Uint8Array, plan: SavePlanColumns): WriteResultColumns {
  const fail = (what: string) =>
    new CheckpointError("INVALID_PLAN", `Expected a rank's encoded write results, got ${what}`);
  if (bytes.byteLength < 16) throw fail(`${bytes.byteLength} bytes`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) !== MAGIC) throw fail("another encoding");
  const n = view.getUint32(4, true);
  const jsonBytes = view.getUint32(8, true);
  const hashBytes = view.getUint32(12, true) === 1 ? n * RESULT_HASH_BYTES : 0;
  const columnsAt = 16 + Math.ceil(jsonBytes / 8) * 8;
  if (bytes.byteLength !== columnsAt + n * 29 + hashBytes)
    throw fail(`${bytes.byteLength} bytes for ${n} results`);
  const head = JSON.parse(fromUtf8.decode(bytes.subarray(16, 16 + jsonBytes))) as {
    algorithm: WriteResultColumns["algorithm"];
    files: string[];
    extra: [number, WriteResult][];
  };
  let at = bytes.byteOffset + columnsAt;
  // Copied out: the columns are aligned, and outlive the message.
  const take = <A>(make: (b: ArrayBuffer) => A, size: number): A => {
    const copy = bytes.buffer.slice(at, at + n * size);
    at += n * size;
    return make(copy as ArrayBuffer);
  };
  const offset = take((b) => new Float64Array(b), 8);
  const length = take((b) => new Float64Array(b), 8);
  const items = take((b) => new Int32Array(b), 4);
  const file = take((b) => new Uint32Array(b), 4);
  const checksums = take((b) => new Uint32Array(b), 4);
  const hasHash = take((b) => new Uint8Array(b), 1);
  const hashes = hashBytes > 0 ? take((b) => new Uint8Array(b), RESULT_HASH_BYTES) : new Uint8Array(0);
  const count = plan.fqnIds.length;
  const extra = new Map(head.extra);
  for (let k = 0; k < n; k++) {
    if (!(items[k]! >= 0 && items[k]! < count)) throw fail(`item ${items[k]} of a plan of ${count}`);
    if (file[k]! >= head.files.length && !extra.has(k)) throw fail(`file ${file[k]} of ${head.files.length}`);
  }
  return {
    plan,
    items,
    files: head.files,
    file,
    offset,
    length,
    algorithm: head.algorithm,
    checksums,
    hashes,
    hasHash,
    extra,
  };
}
