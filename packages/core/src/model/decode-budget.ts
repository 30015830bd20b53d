import { CheckpointError, MetadataError } from "../errors.js";

/** Deepest nesting any decoder accepts: containers in msgpack, pickles, JSON; dict keys; values. */
export const MAX_DECODE_DEPTH = 64;
/** Values (nodes) every decode may make or visit, whatever the input's size: 2¹⁸. */
export const MIN_DECODE_NODES = 1 << 18;
/**
 * Further values per input byte: an honest pickle makes at most one per byte and its walks visit
 * each about once (a `torch.Size` copies its tuple once more).
 */
export const DECODE_NODES_PER_BYTE = 4;
/** Bytes (strings, binaries, copies) every decode may materialise beyond its input: 64 MiB. */
export const MIN_DECODE_BYTES = 64 * 1024 * 1024;
/** Further materialised bytes per input byte. */
export const DECODE_BYTES_PER_BYTE = 2;
/**
 * Milliseconds every decode may take, whatever the input's size: 10 s. A backstop only — the
 * value and byte counts are what bound hostile work (refused in well under 1 s, docs/format.md) —
 * so generous that an honest file decoded by a slow or CPU-starved process never reaches it.
 */
export const MIN_DECODE_MS = 10_000;
/** Input bytes each further millisecond buys (one more second per 1 MiB). */
export const DECODE_BYTES_PER_MS = 1024;

/** The bounds of one decode. */
export interface DecodeLimits {
  /** Most values made or visited, shared references counted each time they are expanded. */
  readonly nodes: number;
  /** Most bytes materialised (strings, binaries, copies of tensors), shared ones counted each time. */
  readonly bytes: number;
  /** Most milliseconds of wall-clock time from the budget's creation. */
  readonly ms: number;
  /** Deepest nesting. */
  readonly depth: number;
}

/**
 * The bounds of decoding an input of `inputBytes` bytes: a floor every input gets (2¹⁸ nodes,
 * 64 MiB, 10 s), plus an allowance proportional to the input (4 nodes and 2 bytes per byte, 1 ms
 * per KiB), so that honest large files decode and a small hostile one is refused by its counts
 * within about 1 s and 256 MiB; the time bound is a backstop that honest files never reach.
 *
 * @param inputBytes - the input's size in bytes.
 * @returns the limits (depth {@link MAX_DECODE_DEPTH}).
 */
export function decodeLimits(inputBytes: number): DecodeLimits {
  return {
    nodes: MIN_DECODE_NODES + DECODE_NODES_PER_BYTE * inputBytes,
    bytes: MIN_DECODE_BYTES + DECODE_BYTES_PER_BYTE * inputBytes,
    ms: MIN_DECODE_MS + inputBytes / DECODE_BYTES_PER_MS,
    depth: MAX_DECODE_DEPTH,
  };
}

/** Which bound of a {@link DecodeBudget} refused an input: values, bytes, nesting or time. */
export type DecodeLimit = "nodes" | "bytes" | "depth" | "time";

/**
 * An input refused because decoding it would cross one of its {@link DecodeLimits}: a
 * {@link MetadataError} (`MALFORMED_METADATA`) that says which bound in {@link DecodeLimitError.limit}.
 */
export class DecodeLimitError extends MetadataError {
  /** The bound crossed: `nodes` (values made or visited), `bytes`, `depth` (nesting) or `time`. */
  readonly limit: DecodeLimit;

  /**
   * @param limit - the bound crossed.
   * @param message - "Malformed {what}: expected …", naming the input and the limit.
   */
  constructor(limit: DecodeLimit, message: string) {
    super(message);
    this.limit = limit;
  }
}

/** Work units between two looks at the clock. */
const CLOCK_EVERY = 4096;

/**
 * The one budget every decoder of untrusted bytes charges — the pickle reader, the torch zip
 * reader, the safetensors header, msgpack — so that no input, however crafted, costs more than
 * {@link decodeLimits} allows: each value made or visited is a node (a value shared through a
 * pickle memo is counted each time a walk expands it), each string, binary or copy its bytes,
 * and the clock is read every few thousand units. One budget is shared by every stage of one
 * decode (the unpickler and the walks over its result).
 */
export class DecodeBudget {
  /** Names the input in errors, e.g. `.metadata (PyTorch DCP)`. */
  readonly what: string;
  /** The bounds this budget enforces. */
  readonly limits: DecodeLimits;
  #nodes = 0;
  #bytes = 0;
  #work = 0;
  readonly #deadline: number;

  /**
   * Starts a budget: its clock runs from here.
   * @param what - names the input in errors.
   * @param inputBytes - the input's size in bytes, which sets the limits.
   * @param limits - the bounds. @default decodeLimits(inputBytes)
   */
  constructor(what: string, inputBytes: number, limits: DecodeLimits = decodeLimits(inputBytes)) {
    this.what = what;
    this.limits = limits;
    this.#deadline = performance.now() + limits.ms;
  }

  /** Nodes charged so far. */
  get nodesUsed(): number {
    return this.#nodes;
  }

  /** Bytes charged so far. */
  get bytesUsed(): number {
    return this.#bytes;
  }

  /**
   * Charges `n` values made or visited.
   * @param n - how many. @default 1
   * @throws {@link DecodeLimitError} `MALFORMED_METADATA` past the node limit (`limit: "nodes"`) or
   * the deadline (`"time"`).
   */
  nodes(n = 1): void {
    this.#nodes += n;
    if (this.#nodes > this.limits.nodes)
      this.#refuse("nodes", `expected at most ${this.limits.nodes} values, the input expands to more`);
    this.#tick(n);
  }

  /**
   * Charges `n` bytes materialised, before they are allocated.
   * @param n - how many bytes.
   * @throws {@link DecodeLimitError} `MALFORMED_METADATA` past the byte limit (`limit: "bytes"`) or
   * the deadline (`"time"`).
   */
  bytes(n: number): void {
    this.#bytes += n;
    if (!(this.#bytes <= this.limits.bytes))
      this.#refuse(
        "bytes",
        `expected at most ${this.limits.bytes} bytes of decoded data, the input expands to more`,
      );
    this.#tick(1 + (n >>> 12));
  }

  /**
   * Checks a nesting depth.
   * @param depth - the depth reached (the top level is 0 or 1, as the caller counts).
   * @throws {@link DecodeLimitError} `MALFORMED_METADATA` (`limit: "depth"`) when deeper than the limit.
   */
  depth(depth: number): void {
    if (depth > this.limits.depth)
      this.#refuse("depth", `expected nesting at most ${this.limits.depth} deep`);
  }

  /**
   * Throws the budget's error for a malformed input (not a crossed limit).
   * @param message - what was expected and found.
   * @throws {@link MetadataError} `MALFORMED_METADATA`: "Malformed {what}: {message}".
   */
  fail(message: string): never {
    throw new MetadataError(`Malformed ${this.what}: ${message}`);
  }

  #refuse(limit: DecodeLimit, message: string): never {
    throw new DecodeLimitError(limit, `Malformed ${this.what}: ${message}`);
  }

  #tick(units: number): void {
    this.#work += units;
    if (this.#work < CLOCK_EVERY) return;
    this.#work = 0;
    if (performance.now() > this.#deadline)
      this.#refuse("time", `expected to decode within ${Math.round(this.limits.ms)} ms, it takes longer`);
  }
}

/**
 * Runs a decoder so that whatever it throws is a coded error: a {@link CheckpointError} passes
 * through, anything else (a `RangeError` from a `DataView` read out of bounds, a stack overflow, an
 * allocation that failed) becomes a {@link MetadataError} naming the input, with the original as
 * its cause.
 *
 * @param what - names the input, e.g. `torch item "w" in __0_0.distcp`.
 * @param decode - the decoder.
 * @returns what it returns.
 * @throws {@link CheckpointError} as thrown; {@link MetadataError} `MALFORMED_METADATA` otherwise.
 */
export function decodeGuarded<T>(what: string, decode: () => T): T {
  try {
    return decode();
  } catch (cause) {
    if (cause instanceof CheckpointError) throw cause;
    const reason = cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
    throw new MetadataError(`Malformed ${what}: it does not decode (${reason})`, { cause });
  }
}
