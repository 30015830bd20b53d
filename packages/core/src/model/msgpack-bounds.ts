import { MetadataError } from "../errors.js";
import { DecodeBudget, DecodeLimitError, MAX_DECODE_DEPTH } from "./decode-budget.js";

/** Deepest nesting of arrays and maps accepted in `.metadata` and in stored values: {@link MAX_DECODE_DEPTH}. */
export const MAX_MSGPACK_DEPTH = MAX_DECODE_DEPTH;

/** Bytes of each fixed-size msgpack format (0 where the size is read from the header). */
function fixedSize(tag: number): number {
  if (tag <= 0x7f || tag >= 0xe0 || tag === 0xc0 || tag === 0xc2 || tag === 0xc3) return 1;
  switch (tag) {
    case 0xcc:
    case 0xd0:
      return 2;
    case 0xcd:
    case 0xd1:
    case 0xd4:
      return 3;
    case 0xd5:
      return 4;
    case 0xca:
    case 0xce:
    case 0xd2:
      return 5;
    case 0xd6:
      return 6;
    case 0xcb:
    case 0xcf:
    case 0xd3:
      return 9;
    case 0xd7:
      return 10;
    case 0xd8:
      return 18;
    default:
      return 0;
  }
}

/**
 * Variable-size formats by tag: bytes of the length field, header bytes after it (an extension's
 * type), and what the length counts (payload bytes, array values, or map pairs).
 */
const VARIABLE = new Map<number, readonly [1 | 2 | 4, number, "bytes" | "values" | "pairs"]>([
  [0xc4, [1, 0, "bytes"]], // bin 8
  [0xc5, [2, 0, "bytes"]], // bin 16
  [0xc6, [4, 0, "bytes"]], // bin 32
  [0xd9, [1, 0, "bytes"]], // str 8
  [0xda, [2, 0, "bytes"]], // str 16
  [0xdb, [4, 0, "bytes"]], // str 32
  [0xc7, [1, 1, "bytes"]], // ext 8
  [0xc8, [2, 1, "bytes"]], // ext 16
  [0xc9, [4, 1, "bytes"]], // ext 32
  [0xdc, [2, 0, "values"]], // array 16
  [0xdd, [4, 0, "values"]], // array 32
  [0xde, [2, 0, "pairs"]], // map 16
  [0xdf, [4, 0, "pairs"]], // map 32
]);

/**
 * Walks msgpack bytes without decoding them and refuses, before anything is allocated, input that
 * a decoder would turn into a memory or stack bomb: containers that declare more elements than
 * the bytes left could hold (each element takes at least one byte), strings, binaries and
 * extensions longer than the bytes left, nesting deeper than `maxDepth`, an invalid tag, or bytes
 * after the one top-level value — and charges `budget` what the decoder will make: a node per
 * value, the bytes of each string, binary and extension. Time and memory are linear in
 * `bytes.byteLength` (the walk keeps one counter per open container).
 *
 * @param bytes - the msgpack bytes.
 * @param what - names the input in the error, e.g. `.metadata`.
 * @param budget - the decode's budget, whose depth limit bounds the nesting of arrays and maps.
 * @default a new {@link DecodeBudget} for the input's size (depth {@link MAX_MSGPACK_DEPTH})
 * @throws {@link MetadataError} `MALFORMED_METADATA` saying which limit was crossed and where — a
 * {@link DecodeLimitError} naming the bound for too deep a nesting or a crossed budget.
 */
export function assertMsgpackWithinLimits(
  bytes: Uint8Array,
  what: string,
  budget: DecodeBudget = new DecodeBudget(what, bytes.byteLength),
): void {
  const maxDepth = budget.limits.depth;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const end = bytes.byteLength;
  const open: number[] = []; // values still expected by each open container
  let pending = 1; // values still expected in all: the top-level one plus every open container's
  let at = 0;
  const refuse = (message: string): never => {
    throw new MetadataError(`Malformed ${what}: ${message} (at byte ${at} of ${end})`);
  };
  const need = (n: number) => {
    if (n > end - at) refuse(`expected ${n} more bytes, found ${end - at}`);
  };
  while (pending > 0) {
    need(1);
    const tag = bytes[at]!;
    let size = fixedSize(tag);
    let children = 0;
    if (size === 0) {
      if (tag >= 0x80 && tag <= 0x8f) {
        size = 1;
        children = 2 * (tag & 0x0f);
      } else if (tag >= 0x90 && tag <= 0x9f) {
        size = 1;
        children = tag & 0x0f;
      } else if (tag >= 0xa0 && tag <= 0xbf) {
        size = 1 + (tag & 0x1f);
      } else {
        const [width, extra, counts] =
          VARIABLE.get(tag) ?? refuse(`invalid msgpack tag 0x${tag.toString(16)}`);
        need(1 + width);
        const n =
          width === 1 ? view.getUint8(at + 1) : width === 2 ? view.getUint16(at + 1) : view.getUint32(at + 1);
        size = 1 + width + extra;
        if (counts === "bytes") {
          size += n;
          budget.bytes(n);
        } else children = counts === "pairs" ? 2 * n : n;
      }
    }
    need(size);
    budget.nodes();
    at += size;
    pending -= 1;
    if (open.length > 0) open[open.length - 1]! -= 1;
    if (children > 0) {
      if (open.length >= maxDepth)
        throw new DecodeLimitError(
          "depth",
          `Malformed ${what}: expected nesting at most ${maxDepth} deep (at byte ${at} of ${end})`,
        );
      if (pending + children > end - at) {
        refuse(`a container declares ${children} elements, but only ${end - at} bytes are left`);
      }
      open.push(children);
      pending += children;
    }
    while (open.length > 0 && open[open.length - 1] === 0) open.pop();
  }
  if (at !== end) refuse(`expected one value, found ${end - at} more bytes after it`);
}
