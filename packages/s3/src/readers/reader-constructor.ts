import type { S3Client } from "@aws-sdk/client-s3";
import { CheckpointError } from "@dcpjs/core";
import type { ByteRange, FileReadStream, ReadCapabilities } from "@dcpjs/core/extend";
import { assertIntegerInRange } from "@dcpjs/core/extend";
import {
  DCPOptimizedS3Reader,
  DEFAULT_MAX_GAP_SIZE,
  DEFAULT_PARALLEL_THRESHOLD,
  dcpOptimizedRule,
  type MAX_RUN_BYTES,
  RANGE_GET_BYTES,
} from "./dcp-optimized-reader.js";
import { DEFAULT_RANGE_BUFFER_BYTES, RangeBasedS3Reader } from "./range-based-reader.js";
import { SequentialS3Reader } from "./sequential-reader.js";

/** The object a reader is made for. */
export interface ReaderTarget {
  /** The client. */
  readonly client: S3Client;
  /** The bucket. */
  readonly bucket: string;
  /** The key. */
  readonly key: string;
  /** `s3://bucket/key`. */
  readonly uri: string;
}

/** Which reader a constructor makes, as s3torchconnector's `get_reader_type_string`. */
export type ReaderType = "sequential" | "range_based" | "dcp_optimized";

/**
 * Makes the reader for each object an `S3FileSystem` opens in `rb` mode, as s3torchconnector's
 * `S3ReaderConstructor`. Build one with {@link S3ReaderConstructor}.
 */
export interface ReaderConstructor {
  /** Which reader it makes. */
  readonly type: ReaderType;
  /**
   * What its readers are good at, for the read scheduler (see `ReadCapabilities`): its coalescing
   * rule as data, its piece size; left out: a local disk's defaults.
   */
  readonly capabilities?: Partial<ReadCapabilities>;
  /**
   * Makes a reader.
   * @param target - the object.
   * @param runs - the read runs the caller will ask for, ascending (from the read schedule via
   * `createStream(path, "rb", { runs })`); the DCP-optimized reader needs them.
   */
  create(target: ReaderTarget, runs?: readonly ByteRange[]): FileReadStream;
}

/** Options of {@link S3ReaderConstructor.rangeBased}. */
export interface RangeBasedOptions {
  /** Read-ahead buffer in bytes; 0 disables it. @default 8 MiB */
  readonly bufferSize?: number;
}

/** Options of {@link S3ReaderConstructor.dcpOptimized}. */
export interface DcpOptimizedOptions {
  /** Largest gap in bytes between items that still share one GET (`Infinity` allowed). @default 32 MiB */
  readonly maxGapSize?: number;
  /**
   * Items of at least this many bytes are not coalesced; pieces of them are fetched by parallel
   * ranged GETs straight into the destination (`Infinity` turns this off: every item is then
   * fetched whole with its neighbours). @default 16 MiB
   */
  readonly parallelThreshold?: number;
}

class DcpOptimizedConstructor implements ReaderConstructor {
  readonly type = "dcp_optimized" as const;
  /**
   * Its coalescing rule, which the read scheduler applies ({@link dcpOptimizedRule}): neighbours
   * within `maxGapSize` share one GET, items of `parallelThreshold` or more are fetched in
   * {@link RANGE_GET_BYTES} pieces.
   */
  readonly capabilities: Partial<ReadCapabilities>;

  constructor(maxGapSize: number, parallelThreshold: number) {
    if (typeof maxGapSize !== "number" || Number.isNaN(maxGapSize) || maxGapSize < 0) {
      throw new CheckpointError(
        "INVALID_ARGUMENT",
        `Expected maxGapSize to be a number >= 0 (or Infinity), got ${String(maxGapSize)}`,
      );
    }
    this.capabilities = {
      coalesce: dcpOptimizedRule(maxGapSize, parallelThreshold),
      pieceBytes: RANGE_GET_BYTES,
    };
  }

  create(target: ReaderTarget, runs?: readonly ByteRange[]): FileReadStream {
    if (target.key.endsWith(".metadata")) return new SequentialS3Reader(target);
    if (!runs) {
      throw new CheckpointError(
        "INVALID_ARGUMENT",
        `No ranges found for ${target.uri}. The DCP-optimized reader reads the runs it is opened with (createStream(path, "rb", { runs }), as FileSystemReader does); use S3ReaderConstructor.sequential() or rangeBased() for custom read patterns.`,
      );
    }
    return new DCPOptimizedS3Reader(
      target,
      runs.map((r) => ({ start: r.offset, end: r.offset + r.length })),
    );
  }
}

/**
 * Factories of the readers `S3FileSystem` and `S3StorageReader` use, as s3torchconnector's
 * `S3ReaderConstructor`.
 */
export const S3ReaderConstructor = {
  /**
   * One GET of the whole object, buffered from 0 to the furthest position read (memory grows to
   * the object's size); any access pattern.
   */
  sequential(): ReaderConstructor {
    return { type: "sequential", create: (t) => new SequentialS3Reader(t) };
  },
  /**
   * Ranged GETs with a read-ahead buffer (memory: `bufferSize`); any access pattern.
   * @param options - `bufferSize` (default 8 MiB).
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` for a negative or non-integer buffer size.
   */
  rangeBased(options: RangeBasedOptions = {}): ReaderConstructor {
    const bufferSize = options.bufferSize ?? DEFAULT_RANGE_BUFFER_BYTES;
    assertIntegerInRange("bufferSize", bufferSize, 0, Number.MAX_SAFE_INTEGER, " bytes");
    return { type: "range_based", create: (t) => new RangeBasedS3Reader(t, bufferSize) };
  },
  /**
   * Coalesced ranged GETs over the items the load plan needs (the default of
   * `S3StorageReader`): one GET per run of neighbouring items whose gaps are at most
   * `maxGapSize` (runs of at most {@link MAX_RUN_BYTES}), parallel 8 MiB GETs into an item of
   * `parallelThreshold` or more. The rule is data (`capabilities.coalesce`) that the read
   * scheduler applies; the streams are opened with the resulting runs (`FileSystemReader` passes
   * each file's).
   * @param options - `maxGapSize` (default 32 MiB), `parallelThreshold` (default 16 MiB).
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` for a `maxGapSize` that is negative or not
   * a number (`null` included).
   */
  dcpOptimized(options: DcpOptimizedOptions = {}): ReaderConstructor {
    // `null` is refused by the constructor's check, not mistaken for "use the default".
    return new DcpOptimizedConstructor(
      options.maxGapSize === undefined ? DEFAULT_MAX_GAP_SIZE : options.maxGapSize,
      options.parallelThreshold === undefined ? DEFAULT_PARALLEL_THRESHOLD : options.parallelThreshold,
    );
  },
} as const;
