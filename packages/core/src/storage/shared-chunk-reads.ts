import { randomUUID } from "#platform";
import type { LoadPlan } from "../plan/metadata.js";
import { keepStaging } from "./staging-buffers.js";

/**
 * This process's id. A reader puts it in its rank's local load plan, so the coordinator sees which
 * ranks share a process (in-process ranks, `createLocalProcessGroups`) and can let them share reads.
 */
export const PROCESS_ID: string = randomUUID();

/**
 * Most bytes of shared chunks this process holds at once while its ranks load (bytes): past it,
 * a rank reads a chunk for itself instead of for all. 256 MiB.
 */
export const SHARED_READ_BYTES = 256 * 1024 * 1024;

/** What a reader keeps in a load plan's `storageData`. */
export interface ReadPlanData {
  /** The process of the rank that made the plan ({@link PROCESS_ID}). */
  readonly process?: string;
  /**
   * Set by the coordinator: the saved chunks (by `metadataIndexKey`) this rank reads that other
   * ranks of its process read too, with how many ranks of the process read each, and the load
   * they belong to.
   */
  readonly shared?: { readonly load: string; readonly readers: Readonly<Record<string, number>> };
}

/**
 * Marks, in each rank's plan, the saved chunks that two or more ranks of one process read — the
 * coordinator's half of shared chunk reads. Ranks of other processes, and chunks one rank reads,
 * are left alone.
 *
 * @param plans - every rank's local plan, as `prepareLocalPlan` tagged it with its process.
 * @param keyOf - the saved chunk a read item (item `index` of rank `rank`'s plan) reads (its `metadataIndexKey`).
 * @returns the plans, with `storageData.shared` where a rank shares chunks.
 */
export function planSharedReads(
  plans: readonly LoadPlan[],
  keyOf: (item: LoadPlan["items"][number], index: number, rank: number) => string,
): LoadPlan[] {
  const byProcess = new Map<string, number[]>();
  plans.forEach((plan, rank) => {
    const process = (plan.storageData as ReadPlanData | undefined)?.process;
    if (process === undefined) return;
    const ranks = byProcess.get(process);
    if (ranks) ranks.push(rank);
    else byProcess.set(process, [rank]);
  });
  const out = [...plans];
  const load = randomUUID();
  for (const ranks of byProcess.values()) {
    if (ranks.length < 2) continue;
    const keysOf = ranks.map((rank) => new Set(plans[rank]!.items.map((item, i) => keyOf(item, i, rank))));
    const readers = new Map<string, number>();
    for (const keys of keysOf) for (const key of keys) readers.set(key, (readers.get(key) ?? 0) + 1);
    ranks.forEach((rank, i) => {
      const mine: Record<string, number> = {};
      let any = false;
      for (const key of keysOf[i]!) {
        const n = readers.get(key)!;
        if (n > 1) {
          mine[key] = n;
          any = true;
        }
      }
      if (any) {
        const plan = plans[rank]!;
        out[rank] = {
          ...plan,
          storageData: { ...(plan.storageData as object), shared: { load, readers: mine } },
        };
      }
    });
  }
  return out;
}

/** One shared chunk of a load: how many of its ranks have not finished with it, and its bytes once read. */
interface Entry {
  remaining: number;
  payload?: Promise<Uint8Array>;
  staging?: Uint8Array;
  held: number;
}

/** A load's shared chunks in this process, and the ranks taking part. */
interface LoadRecord {
  readonly entries: Map<string, Entry>;
  participants: number;
}

const loads = new Map<string, LoadRecord>();
let heldBytes = 0;

/** A shared chunk read: its verified payload and the staging buffer it lies in (reused afterwards). */
export interface SharedFetch {
  /** The chunk's verified payload (a view of `staging` for dcpjs's own items). */
  readonly payload: Uint8Array;
  /** The buffer it was read into, kept for a later read (`keepStaging`) once every rank is done; none when read in place. */
  readonly staging: Uint8Array | undefined;
}

/**
 * One rank's view of the chunks it shares with the other ranks of its process in one load: the
 * first rank to need a chunk reads and verifies it (with `fetch`) for all of them; the others wait
 * for those bytes; the bytes are dropped (their buffer kept for a later read, see
 * `staging-buffers.ts`) when every rank is done with them. While the process holds `budgetBytes`
 * of shared chunks, a rank reads a further chunk for itself (correct, slower).
 */
export class SharedChunkReads {
  readonly #load: string;
  readonly #record: LoadRecord;
  readonly #readers: Readonly<Record<string, number>>;
  readonly #budget: number;
  readonly #released = new Set<string>();
  #closed = false;

  /**
   * @param shared - the plan's `storageData.shared`.
   * @param budgetBytes - see {@link SHARED_READ_BYTES}.
   */
  constructor(shared: NonNullable<ReadPlanData["shared"]>, budgetBytes: number) {
    let record = loads.get(shared.load);
    if (!record) {
      record = { entries: new Map(), participants: 0 };
      loads.set(shared.load, record);
    }
    record.participants++;
    this.#load = shared.load;
    this.#record = record;
    this.#readers = shared.readers;
    this.#budget = budgetBytes;
  }

  /** Whether this rank shares the saved chunk `key` (and is not done with it). */
  shares(key: string): boolean {
    return this.#readers[key] !== undefined && !this.#released.has(key);
  }

  /**
   * The verified payload of a shared chunk: read by `fetch` once for the ranks of this process,
   * or by this rank alone when the process holds its budget of shared bytes.
   * @param key - the chunk's key.
   * @param length - its stored bytes.
   * @param fetch - reads and verifies it (into a staging buffer from `takeStaging`).
   * @throws what `fetch` throws — for every rank waiting on the chunk (the chunk's own error).
   */
  async get(key: string, length: number, fetch: () => Promise<SharedFetch>): Promise<Uint8Array> {
    const entry = this.#entry(key);
    if (!entry.payload) {
      if (entry.remaining < 2 || heldBytes + length > this.#budget) return (await fetch()).payload;
      entry.held = length;
      heldBytes += length;
      entry.payload = fetch().then((f) => {
        if (f.staging) entry.staging = f.staging;
        return f.payload;
      });
      entry.payload.catch(() => {}); // every rank that waits on it gets the failure
    }
    return entry.payload;
  }

  /** This rank is done with the chunk: the last rank's release drops its bytes. */
  release(key: string): void {
    if (!this.shares(key)) return;
    this.#released.add(key);
    const entry = this.#entry(key);
    if (--entry.remaining > 0) return;
    this.#drop(key, entry);
  }

  /** Releases every chunk this rank has not (its load ended, or failed, before it read them) and leaves the load. */
  releaseAll(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const key of Object.keys(this.#readers)) this.release(key);
    if (--this.#record.participants > 0) return;
    // The last rank of this process to finish: nothing of the load is needed any more.
    for (const [key, entry] of this.#record.entries) this.#drop(key, entry);
    loads.delete(this.#load);
  }

  #drop(key: string, entry: Entry): void {
    heldBytes -= entry.held;
    entry.held = 0;
    this.#record.entries.delete(key);
    // Its buffer is kept for a later read (fresh ones cost page faults).
    if (entry.staging) keepStaging(entry.staging);
  }

  #entry(key: string): Entry {
    let entry = this.#record.entries.get(key);
    if (!entry) {
      entry = { remaining: this.#readers[key] ?? 1, held: 0 };
      this.#record.entries.set(key, entry);
    }
    return entry;
  }
}

/** Bytes of shared chunks this process holds now (for tests and benchmarks). */
export function sharedReadBytesHeld(): number {
  return heldBytes;
}
