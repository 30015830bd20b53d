import { CheckpointError } from "../errors.js";
import { assertIntegerInRange } from "../validate.js";

/**
 * The collectives dcpjs needs from a group of ranks, over values the group can carry (plain
 * data; a multi-process group must encode them, e.g. with msgpack). Every rank must call the same
 * collectives in the same order, as with `torch.distributed`.
 */
export interface ProcessGroup {
  /** This rank, 0 ≤ rank < size. */
  readonly rank: number;
  /** The number of ranks. */
  readonly size: number;
  /**
   * Collects one value per rank on `root`.
   * @param value - this rank's value.
   * @param root - the receiving rank. @default 0
   * @returns on `root`, the values in rank order; elsewhere `undefined`.
   */
  gather<T>(value: T, root?: number): Promise<T[] | undefined>;
  /**
   * Sends element i of `root`'s array to rank i.
   * @param values - on `root`, exactly `size` values; ignored elsewhere.
   * @param root - the sending rank. @default 0
   * @returns this rank's element.
   */
  scatter<T>(values: T[] | undefined, root?: number): Promise<T>;
  /**
   * Sends `root`'s value to every rank.
   * @param value - on `root`, the value; ignored elsewhere.
   * @param root - the sending rank. @default 0
   */
  broadcast<T>(value: T | undefined, root?: number): Promise<T>;
  /**
   * Collects one value per rank on every rank.
   * @param value - this rank's value.
   * @returns the values in rank order.
   */
  allGather<T>(value: T): Promise<T[]>;
  /** Resolves once every rank has called it. */
  barrier(): Promise<void>;
  /**
   * How another thread of this process (the save thread of `asyncSave`) rebuilds this rank as a
   * group of its own: plain, cloneable data. The rebuilt ranks meet among themselves, apart from
   * this group's own collectives (their own round counter or key namespace), so a background save
   * never mixes with what the calling thread runs meanwhile. Every rank of the group must
   * describe itself (or none may). @default absent: `asyncSave` runs its save on the calling
   * thread, as `save` does
   */
  describeForWorker?(): WorkerGroupDescription | undefined;
}

/**
 * A {@link ProcessGroup} as another thread rebuilds it ({@link ProcessGroup.describeForWorker}):
 * `local`, a rank of {@link createLocalProcessGroups} (its ranks meet again in the thread that
 * rebuilds them all); `module`, the result of calling export `factory` of the ES module `module`
 * (a URL, e.g. the group's own `import.meta.url`) with `options`, kept for later saves under `key`.
 */
export type WorkerGroupDescription =
  | { readonly kind: "local"; readonly id: string; readonly rank: number; readonly size: number }
  | {
      readonly kind: "module";
      readonly module: string;
      readonly factory: string;
      readonly options: unknown;
      readonly key: string;
    };

/**
 * Checks a collective's root rank, for {@link ProcessGroup} implementations.
 *
 * @param root - the root rank.
 * @param size - the group's size.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when `root` is not a rank of the group.
 */
export function assertRoot(root: number, size: number): void {
  assertIntegerInRange("root", root, 0, size - 1);
}

/**
 * Checks what the root of a scatter passes, for {@link ProcessGroup} implementations.
 *
 * @param values - the root's values.
 * @param size - the group's size.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` unless there is exactly one value per rank.
 */
export function assertScatterValues(values: readonly unknown[] | undefined, size: number): void {
  if (values === undefined || values.length !== size) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected ${size} values to scatter, got ${values?.length ?? "none"}`,
    );
  }
}

interface Round {
  readonly values: unknown[];
  arrived: number;
  readonly done: Promise<unknown[]>;
  resolve(values: unknown[]): void;
}

class LocalProcessGroup implements ProcessGroup {
  #seq = 0;

  constructor(
    readonly rank: number,
    readonly size: number,
    private readonly rounds: Map<number, Round>,
    private readonly id: string,
  ) {}

  describeForWorker(): WorkerGroupDescription {
    return { kind: "local", id: this.id, rank: this.rank, size: this.size };
  }

  /** Contributes `value` to this rank's next collective and waits for every rank's. */
  #exchange(value: unknown): Promise<unknown[]> {
    const seq = this.#seq++;
    let round = this.rounds.get(seq);
    if (!round) {
      let resolve!: (values: unknown[]) => void;
      const done = new Promise<unknown[]>((r) => {
        resolve = r;
      });
      round = { values: new Array(this.size), arrived: 0, done, resolve };
      this.rounds.set(seq, round);
    }
    round.values[this.rank] = value;
    round.arrived++;
    if (round.arrived === this.size) {
      this.rounds.delete(seq);
      round.resolve(round.values);
    }
    return round.done;
  }

  async gather<T>(value: T, root = 0): Promise<T[] | undefined> {
    assertRoot(root, this.size);
    const all = (await this.#exchange(value)) as T[];
    return this.rank === root ? all : undefined;
  }

  async scatter<T>(values: T[] | undefined, root = 0): Promise<T> {
    assertRoot(root, this.size);
    if (this.rank === root) assertScatterValues(values, this.size);
    const all = await this.#exchange(this.rank === root ? values : undefined);
    return (all[root] as T[])[this.rank] as T;
  }

  async broadcast<T>(value: T | undefined, root = 0): Promise<T> {
    assertRoot(root, this.size);
    const all = await this.#exchange(this.rank === root ? value : undefined);
    return all[root] as T;
  }

  async allGather<T>(value: T): Promise<T[]> {
    return [...((await this.#exchange(value)) as T[])];
  }

  async barrier(): Promise<void> {
    await this.#exchange(null);
  }
}

/**
 * Creates `n` ranks that live in this process (e.g. one per async task or worker-less test), for
 * tests, demos and single-machine jobs. Values are passed by reference, not copied.
 *
 * @param n - the number of ranks, ≥ 1.
 * @returns one {@link ProcessGroup} per rank, index = rank.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when `n` is not a positive integer.
 * @example
 * ```ts
 * const groups = createLocalProcessGroups(4);
 * await Promise.all(groups.map((pg) => save(stateDictOf(pg.rank), { checkpointId: dir, processGroup: pg })));
 * ```
 */
export function createLocalProcessGroups(n: number): ProcessGroup[] {
  assertIntegerInRange("number of ranks", n, 1);
  const rounds = new Map<number, Round>();
  const id = crypto.randomUUID();
  return Array.from({ length: n }, (_, rank) => new LocalProcessGroup(rank, n, rounds, id));
}

const rebuilt = new Map<
  string,
  { readonly rounds: Map<number, Round>; readonly ranks: Map<number, ProcessGroup> }
>();

/**
 * Rank `rank` of the in-process group `id` as this thread rebuilds it from
 * {@link ProcessGroup.describeForWorker}: the ranks rebuilt in one thread meet among themselves
 * (their own rounds, apart from the original group's), and one rank is rebuilt once, so its
 * collectives stay in step across saves.
 *
 * @param description - a `local` {@link WorkerGroupDescription}.
 * @returns the rebuilt rank.
 */
export function rebuildLocalProcessGroup(
  description: Extract<WorkerGroupDescription, { kind: "local" }>,
): ProcessGroup {
  const { id, rank, size } = description;
  if (size === 1) return new LocalProcessGroup(0, 1, new Map(), id);
  let group = rebuilt.get(id);
  if (!group) {
    group = { rounds: new Map(), ranks: new Map() };
    rebuilt.set(id, group);
  }
  let pg = group.ranks.get(rank);
  if (!pg) {
    pg = new LocalProcessGroup(rank, size, group.rounds, id);
    group.ranks.set(rank, pg);
  }
  return pg;
}

/**
 * Whether `pg` hands values to its ranks by reference (a group of {@link createLocalProcessGroups}):
 * then a collective's payload need not be encoded to cross it.
 *
 * @param pg - any group.
 */
export function passesByReference(pg: ProcessGroup): boolean {
  return pg instanceof LocalProcessGroup;
}

/**
 * A group of one rank (rank 0 of 1): the default when `save` / `load` get no process group, as
 * DCP's `no_dist`.
 */
export function createSingleProcessGroup(): ProcessGroup {
  return createLocalProcessGroups(1)[0]!;
}
