import { CheckpointError } from "@dcpjs/core";
import type { FileReadStream } from "@dcpjs/core/extend";
import type { HttpClient } from "./http-client.js";

/**
 * Bytes fetched on first contact with a file (its size is asked): small files (`.metadata`, an
 * index, a safetensors header) are then served without a second request.
 */
export const PROBE_BYTES = 64 * 1024;

function assertRange(offset: number, length: number): void {
  for (const [name, value] of [
    ["offset", offset],
    ["length", length],
  ] as const) {
    if (!Number.isSafeInteger(value) || value < 0)
      throw new CheckpointError("INVALID_ARGUMENT", `Expected ${name} to be an integer ≥ 0, got ${value}`);
  }
}

/**
 * A {@link FileReadStream} over one URL: every read is one ranged GET (the read scheduler plans
 * which: coalesced runs, pieces of big items, partial checksum blocks), bounded per origin by the
 * client; `size()` is the first contact, which pins the file's identity.
 */
export class HttpReadStream implements FileReadStream {
  #head: Uint8Array | undefined;

  /**
   * @param client - the file system's client.
   * @param url - the file's URL.
   * @param signal - the stream's signal (`createStream`'s), joined with each call's.
   */
  constructor(
    readonly client: HttpClient,
    readonly url: string,
    readonly signal?: AbortSignal,
  ) {}

  /** @inheritDoc The pinned size, else a GET of the first {@link PROBE_BYTES} (kept for later reads). */
  async size(signal?: AbortSignal): Promise<number> {
    const known = this.client.identity(this.url)?.size;
    if (known !== undefined) return known;
    const { size, head } = await this.client.probe(this.url, PROBE_BYTES, this.#join(signal));
    this.#head = head;
    return size;
  }

  /** @inheritDoc */
  async read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    assertRange(offset, length);
    const out = new Uint8Array(length);
    await this.readInto(offset, out, signal);
    return out;
  }

  /** @inheritDoc */
  async readInto(offset: number, target: Uint8Array, signal?: AbortSignal): Promise<void> {
    assertRange(offset, target.byteLength);
    // Only this stream's own first bytes: a reread after a checksum mismatch opens a new stream, which fetches afresh.
    const head = this.#head;
    if (head !== undefined && offset + target.byteLength <= head.byteLength) {
      target.set(head.subarray(offset, offset + target.byteLength));
      return;
    }
    await this.client.readInto(this.url, offset, [target], this.#join(signal));
  }

  /** @inheritDoc One ranged GET whose body is scattered over `targets`. */
  async readvInto(offset: number, targets: readonly Uint8Array[], signal?: AbortSignal): Promise<void> {
    assertRange(offset, 0);
    await this.client.readInto(this.url, offset, targets, this.#join(signal));
  }

  /** @inheritDoc Drops the bytes kept from the first contact (requests hold no connection between reads). */
  async close(): Promise<void> {
    this.#head = undefined;
  }

  #join(signal: AbortSignal | undefined): AbortSignal | undefined {
    if (this.signal === undefined || signal === undefined || signal === this.signal)
      return signal ?? this.signal;
    return AbortSignal.any([this.signal, signal]);
  }
}
