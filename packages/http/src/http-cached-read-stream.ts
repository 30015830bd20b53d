import { CheckpointError } from "@dcpjs/core";
import {
  type CachedFileVersion,
  CachedReadStream,
  type FileReadStream,
  type ReadCache,
  readViaReadInto,
} from "@dcpjs/core/extend";
import type { HttpClient } from "./http-client.js";
import { HttpRequestError } from "./http-errors.js";
import { HttpReadStream } from "./http-read-stream.js";

/**
 * The cache's name for a file: its URL without query string or fragment (a re-signed URL hits),
 * and under an `hf://` id the Hub's `resolve` URL at the pinned commit once the Hub named one.
 * @param client - the file system's client (its pinned Hub revisions).
 * @param url - the file's URL.
 */
export function cacheIdOf(client: HttpClient, url: string): string {
  const hub = client.hubLocation(url);
  const at = hub === undefined ? url : `${hub.endpointBase}/${hub.repo}/resolve/${hub.revision}/${hub.path}`;
  const u = new URL(at);
  u.search = "";
  u.hash = "";
  return u.href;
}

/**
 * A {@link FileReadStream} over one URL served from a machine-local {@link ReadCache} (core's
 * `CachedReadStream`): the file's identity is pinned on first contact (a HEAD; a one-byte GET
 * where HEAD is refused or leads to another origin, as the Hub's CDN), and blocks are keyed by
 * {@link cacheIdOf} the URL and that identity — the ETag, else `Last-Modified` — with the size, so a
 * replaced file misses. Missing blocks are ranged GETs checked against the pinned identity
 * (`If-Match`/`If-Range`, `SOURCE_CHANGED` on a change), so bytes of another version are never
 * cached. A file without ETag or `Last-Modified` has no identity to key by: it is read directly
 * (an {@link HttpReadStream}), uncached.
 */
export class HttpCachedReadStream implements FileReadStream {
  readonly #direct: HttpReadStream;
  readonly #cached: CachedReadStream;
  #route: Promise<FileReadStream> | undefined;
  #file: Promise<CachedFileVersion | undefined> | undefined;

  /**
   * @param client - the file system's client.
   * @param url - the file's URL.
   * @param cache - the cache.
   * @param signal - the stream's signal (`createStream`'s), joined with each call's.
   * @param refresh - fetch from the source and replace the cached blocks (a stream opened with `refetch`). @default false
   */
  constructor(
    readonly client: HttpClient,
    readonly url: string,
    cache: ReadCache,
    readonly signal?: AbortSignal,
    refresh = false,
  ) {
    this.#direct = new HttpReadStream(client, url, signal);
    this.#cached = new CachedReadStream(
      {
        uri: url,
        identify: async (s) => {
          const file = await this.#identified(s);
          if (file === undefined)
            throw new CheckpointError(
              "IO_ERROR",
              `Expected an ETag or Last-Modified for ${url}, got neither`,
            );
          return file;
        },
        fetch: async (_file, start, end, s) => {
          const out = new Uint8Array(end - start);
          await this.client.readInto(this.url, start, [out], this.#join(s));
          return out;
        },
      },
      cache,
      refresh,
    );
  }

  /** @inheritDoc */
  async size(signal?: AbortSignal): Promise<number> {
    return (await this.#stream(signal)).size(signal);
  }

  /** @inheritDoc */
  read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    return readViaReadInto(this, offset, length, signal);
  }

  /** @inheritDoc */
  async readInto(offset: number, target: Uint8Array, signal?: AbortSignal): Promise<void> {
    const stream = await this.#stream(signal);
    await stream.readInto!(offset, target, signal);
  }

  /** @inheritDoc */
  async close(): Promise<void> {
    await this.#direct.close();
  }

  /** The cached stream for a file with an identity to key by, else the direct one. */
  #stream(signal: AbortSignal | undefined): Promise<FileReadStream> {
    this.#route ??= this.#identified(signal).then((file) =>
      file === undefined ? this.#direct : this.#cached,
    );
    return this.#route;
  }

  /** {@link HttpCachedReadStream.#identify}, once per stream; a failed first contact (an abort, a network failure) is tried again by the next call. */
  #identified(signal: AbortSignal | undefined): Promise<CachedFileVersion | undefined> {
    if (this.#file === undefined) {
      const file = this.#identify(signal);
      this.#file = file;
      file.catch(() => {
        if (this.#file === file) {
          this.#file = undefined;
          this.#route = undefined;
        }
      });
    }
    return this.#file;
  }

  /** The pinned identity as the cache keys it; undefined for a file without ETag or Last-Modified. */
  async #identify(signal: AbortSignal | undefined): Promise<CachedFileVersion | undefined> {
    const joined = this.#join(signal);
    let pinned = this.client.identity(this.url);
    if (pinned?.size === undefined) {
      try {
        await this.client.head(this.url, joined);
      } catch (error) {
        // A server without HEAD: the one-byte GET below pins the identity instead.
        if (!(error instanceof HttpRequestError && (error.status === 405 || error.status === 501)))
          throw error;
      }
      pinned = this.client.identity(this.url);
    }
    // Missing (its NotFoundError), led to another origin, or without a size: a GET pins it there.
    if (pinned?.size === undefined) {
      await this.client.probe(this.url, 1, joined);
      pinned = this.client.identity(this.url);
    }
    const version =
      pinned?.etag !== undefined
        ? `etag:${pinned.etag}`
        : pinned?.lastModified !== undefined
          ? `last-modified:${pinned.lastModified}`
          : undefined;
    if (version === undefined || pinned?.size === undefined) return undefined;
    return { id: cacheIdOf(this.client, this.url), version, size: pinned.size };
  }

  #join(signal: AbortSignal | undefined): AbortSignal | undefined {
    if (this.signal === undefined || signal === undefined || signal === this.signal)
      return signal ?? this.signal;
    return AbortSignal.any([this.signal, signal]);
  }
}
