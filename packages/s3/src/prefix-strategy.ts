import { CheckpointError } from "@dcpjs/core";
import { assertIntegerInRange, rankFilePrefix } from "@dcpjs/core/extend";

/**
 * Decides the key prefix of each rank's data files, as s3torchconnector's
 * `S3PrefixStrategyBase`: rank r's files are `{checkpoint}/{prefix}{n}.distcp`. Prefixes that
 * start with varied characters spread a large job's writes over S3 partitions (fewer 503 SlowDown).
 */
export interface S3PrefixStrategy {
  /**
   * The prefix of `rank`'s data files, ending with `__{rank}_`.
   * @param rank - the rank.
   * @param worldSize - the number of ranks saving (the global plan's size).
   */
  generatePrefix(rank: number, worldSize: number): string;
}

function epochPart(epochNum: number | undefined): string {
  return epochNum === undefined ? "" : `epoch_${epochNum}/`;
}

function checkEpoch(epochNum: number | undefined): void {
  if (epochNum !== undefined) assertIntegerInRange("epochNum", epochNum, Number.MIN_SAFE_INTEGER);
}

/** `__{rank}_`: DCP's own layout, every file at the checkpoint's root. */
export class DefaultPrefixStrategy implements S3PrefixStrategy {
  /** @inheritDoc */
  generatePrefix(rank: number): string {
    return rankFilePrefix(rank);
  }
}

/** Options of {@link NumericPrefixStrategy} and its binary and hex forms. */
export interface NumericPrefixStrategyOptions {
  /** Adds an `epoch_{n}/` folder after the prefix. */
  readonly epochNum?: number;
  /** The shortest prefix, in digits. @default 10 */
  readonly minPrefixLength?: number;
  /** How many distinct prefixes to use. @default the world size at save time */
  readonly prefixCount?: number;
}

/**
 * Prefixes from ranks written in `base` and reversed, so the varying digit comes first, as
 * s3torchconnector's `NumericPrefixStrategy`: with L = max(the fewest digits that give
 * `prefixCount` values, `minPrefixLength`), rank r gets `reverse(pad(r mod prefixCount, L))/`
 * then `epoch_{n}/` if set, then `__{r}_`.
 *
 * Unlike upstream, which reads the world size when constructed (and silently collapses to one
 * prefix if the process group is not set up yet), the default prefix count is the world size of
 * the save that uses it.
 */
export class NumericPrefixStrategy implements S3PrefixStrategy {
  readonly #base: number;
  readonly #options: NumericPrefixStrategyOptions;
  readonly #maps = new Map<number, string[]>();

  /**
   * @param base - the digit base, 2–36.
   * @param options - see {@link NumericPrefixStrategyOptions}.
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` for a base outside 2–36, `minPrefixLength`
   * below 1, a non-integer `epochNum`, or a `prefixCount` that is not a positive integer.
   */
  constructor(base: number, options: NumericPrefixStrategyOptions = {}) {
    assertIntegerInRange("base", base, 2, 36);
    const min = options.minPrefixLength ?? 10;
    assertIntegerInRange("minPrefixLength", min, 1);
    checkEpoch(options.epochNum);
    if (options.prefixCount !== undefined) assertIntegerInRange("prefixCount", options.prefixCount, 1);
    this.#base = base;
    this.#options = options;
  }

  /**
   * The prefixes for `count` distinct values, index = value.
   * @param count - the prefix count.
   */
  prefixMap(count: number): readonly string[] {
    let map = this.#maps.get(count);
    if (!map) {
      let digits = 1;
      while (this.#base ** digits < count) digits++;
      const length = Math.max(digits, this.#options.minPrefixLength ?? 10);
      map = Array.from({ length: count }, (_, i) =>
        [...i.toString(this.#base).padStart(length, "0")].reverse().join(""),
      );
      this.#maps.set(count, map);
    }
    return map;
  }

  /** @inheritDoc */
  generatePrefix(rank: number, worldSize: number): string {
    const map = this.prefixMap(this.#options.prefixCount ?? Math.max(worldSize, 1));
    const slot = ((rank % map.length) + map.length) % map.length;
    return `${map[slot]}/${epochPart(this.#options.epochNum)}${rankFilePrefix(rank)}`;
  }
}

/** {@link NumericPrefixStrategy} in base 2: `0000000000`, `1000000000`, `0100000000`, … */
export class BinaryPrefixStrategy extends NumericPrefixStrategy {
  /** @param options - see {@link NumericPrefixStrategyOptions}. */
  constructor(options: NumericPrefixStrategyOptions = {}) {
    super(2, options);
  }
}

/** {@link NumericPrefixStrategy} in base 16 (lowercase): `0000000000`, `1000000000`, … `f000000000`, `0100000000`. */
export class HexPrefixStrategy extends NumericPrefixStrategy {
  /** @param options - see {@link NumericPrefixStrategyOptions}. */
  constructor(options: NumericPrefixStrategyOptions = {}) {
    super(16, options);
  }
}

/** Options of {@link RoundRobinPrefixStrategy}. */
export interface RoundRobinPrefixStrategyOptions {
  /** Adds an `epoch_{n}/` folder after the prefix. */
  readonly epochNum?: number;
}

/**
 * Spreads ranks over the caller's prefixes in turn, as s3torchconnector's
 * `RoundRobinPrefixStrategy`: rank r gets `{userPrefixes[r mod n]}/` then `epoch_{e}/` if set,
 * then `__{r}_`.
 */
export class RoundRobinPrefixStrategy implements S3PrefixStrategy {
  readonly #prefixes: readonly string[];
  readonly #epochNum: number | undefined;

  /**
   * @param userPrefixes - the prefixes, at least one.
   * @param options - see {@link RoundRobinPrefixStrategyOptions}.
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` for an empty list ("userPrefixes must not be
   * empty") or a non-integer `epochNum`.
   */
  constructor(userPrefixes: readonly string[], options: RoundRobinPrefixStrategyOptions = {}) {
    if (!Array.isArray(userPrefixes) || userPrefixes.length === 0) {
      throw new CheckpointError("INVALID_ARGUMENT", "userPrefixes must not be empty");
    }
    checkEpoch(options.epochNum);
    this.#prefixes = [...userPrefixes];
    this.#epochNum = options.epochNum;
  }

  /** @inheritDoc */
  generatePrefix(rank: number): string {
    const n = this.#prefixes.length;
    return `${this.#prefixes[((rank % n) + n) % n]}/${epochPart(this.#epochNum)}${rankFilePrefix(rank)}`;
  }
}
