import { CheckpointError, MetadataError, NotFoundError } from "@dcpjs/core";
import {
  type CreateStreamOptions,
  decodeCheckpointMetadata,
  type FileEntry,
  type FileReadStream,
  type FileSystemBase,
  type FileWriteStream,
  ReadCache,
  type ReadCapabilities,
  type StreamMode,
  throwIfAborted,
} from "@dcpjs/core/extend";
import pLimit from "p-limit";
import { hfResolvePrefix, isHfId, isHttpCheckpointId, parseHfId, resolveHfUrl } from "./hf-url.js";
import { HttpCachedReadStream } from "./http-cached-read-stream.js";
import { HttpClient } from "./http-client.js";
import { HttpRequestError } from "./http-errors.js";
import { type HttpOptions, resolveHttpOptions } from "./http-options.js";
import { HttpReadStream } from "./http-read-stream.js";

/** A DCP checkpoint's metadata file. */
const METADATA_FILE = ".metadata";
/** A sharded safetensors repository's index. */
const INDEX_FILE = "model.safetensors.index.json";
/** A single-file safetensors repository's file. */
const SINGLE_FILE = "model.safetensors";
/** The CRC sidecar `dcp export --checksums` writes. */
const CHECKSUMS_FILE = "model.safetensors.crc32c.json";
/** Most bytes of one page of the Hub's tree API read (its pages hold 1,000 entries of a few hundred bytes). */
export const MAX_TREE_PAGE_BYTES = 16 * 1024 * 1024;
/** Most pages of the Hub's tree API followed for one listing (a million entries: far beyond a model repository). */
export const MAX_TREE_PAGES = 1_000;

function readOnly(what: string, path: string): CheckpointError {
  return new CheckpointError(
    "INVALID_ARGUMENT",
    `Expected a writable storage to ${what} ${path}, got the HTTP backend, which is read-only`,
  );
}

/**
 * {@link FileSystemBase} over HTTP(S) and the Hugging Face Hub, read-only: paths are `http(s)://`
 * URLs, or `hf://org/repo[@rev][/sub]` ids (resolved by {@link HttpFileSystem.initPath} to the
 * Hub's `resolve` URLs, the revision pinned to the commit the Hub names in `X-Repo-Commit`).
 *
 * Reads are ranged GETs with each file's identity (ETag, else Last-Modified and length) pinned on
 * first contact and sent as `If-Match`/`If-Range` afterwards: a file replaced mid-load fails with
 * `SOURCE_CHANGED`, never mixes versions. At most `maxConnections` requests per origin are in
 * flight; failures are retried through core's `retry` (see {@link HttpOptions}).
 */
export class HttpFileSystem implements FileSystemBase {
  /** The requests, pinned identities and revisions of this file system. */
  readonly client: HttpClient;
  /** The machine-local read cache `rb` streams read through ({@link HttpOptions.cacheDir}), if any. */
  readonly readCache: ReadCache | undefined;

  /**
   * @param options - see {@link HttpOptions}.
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` for an option out of range, or a `cacheDir`
   * that is a file (see core's `ReadCache`).
   */
  constructor(options: HttpOptions = {}) {
    this.client = new HttpClient(resolveHttpOptions(options));
    this.readCache =
      options.readCache ??
      (options.cacheDir !== undefined ? new ReadCache({ dir: options.cacheDir }) : undefined);
  }

  /**
   * @inheritDoc
   * `rb`: an {@link HttpReadStream} (requests are lazy: a missing file fails on its first read or
   * size, with {@link NotFoundError}); with a read cache, an {@link HttpCachedReadStream}.
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` for `wb` (read-only) or another mode.
   */
  async createStream(path: string, mode: "wb", options?: CreateStreamOptions): Promise<FileWriteStream>;
  async createStream(path: string, mode: "rb", options?: CreateStreamOptions): Promise<FileReadStream>;
  async createStream(
    path: string,
    mode: StreamMode,
    options?: CreateStreamOptions,
  ): Promise<FileWriteStream | FileReadStream> {
    throwIfAborted(options?.signal);
    if (mode === "rb") return this.#reader(this.initPath(path), options?.signal, options?.refetch);
    if (mode === "wb") throw readOnly("write", path);
    throw new CheckpointError("INVALID_ARGUMENT", `Expected mode rb, got ${JSON.stringify(mode)}`);
  }

  /**
   * @inheritDoc
   * Neighbouring small items coalesced (a disk's defaults), runs split into 8 MiB pieces (AWS's
   * ranged-GET guidance), `maxConnections` pieces of a file in flight, scatter reads (one GET
   * into several destinations), and `maxAttempts − 1` rereads of a run whose bytes failed their
   * checksum (damage in transit). With a read cache, pieces of one cache block, as S3's cached reads.
   */
  get readCapabilities(): Partial<ReadCapabilities> {
    if (this.readCache)
      return {
        pieceBytes: this.readCache.blockBytes,
        piecesInFlight: this.client.options.maxConnections,
        rereadsOnMismatch: this.client.options.maxAttempts - 1,
      };
    return {
      pieceBytes: 8 * 1024 * 1024,
      piecesInFlight: this.client.options.maxConnections,
      scatterReads: true,
      rereadsOnMismatch: this.client.options.maxAttempts - 1,
    };
  }

  /** @inheritDoc Joins with one `/`, each segment of `suffix` URL-encoded. */
  concatPath(path: string, suffix: string): string {
    const tail = suffix
      .split("/")
      .filter((s) => s.length > 0)
      .map((s) => encodeURIComponent(s))
      .join("/");
    return `${path.replace(/\/+$/, "")}/${tail}`;
  }

  /**
   * @inheritDoc
   * An `hf://` id becomes its Hub URL ({@link resolveHfUrl} against `hfEndpoint`), its revision
   * pinned to the commit of the Hub's first answer; a URL loses its trailing slashes.
   */
  initPath(path: string): string {
    if (isHfId(path)) {
      const { repo, revision } = parseHfId(path);
      const endpoint = this.client.options.hfEndpoint;
      const base = `${endpoint}/${repo}/resolve/`;
      this.client.pinRevision(base, hfResolvePrefix(endpoint, repo, revision));
      return resolveHfUrl(path, endpoint);
    }
    return path.replace(/\/+$/, "");
  }

  /** @inheritDoc Refused: the backend is read-only. */
  async rename(path: string): Promise<void> {
    throw readOnly("rename", path);
  }

  /** @inheritDoc Refused: the backend is read-only. */
  async mkdir(path: string): Promise<void> {
    throw readOnly("create", path);
  }

  /** @inheritDoc Refused: the backend is read-only. */
  async rmFile(path: string): Promise<void> {
    throw readOnly("remove", path);
  }

  /**
   * @inheritDoc
   * A HEAD: false for 404/410; a redirect to another origin (the Hub's CDN) counts as found; a
   * server that refuses HEAD (405/501) is asked for the first byte instead.
   */
  async exists(path: string): Promise<boolean> {
    const url = this.initPath(path);
    try {
      return (await this.client.head(url)) !== undefined;
    } catch (error) {
      // A server without HEAD (405/501): the first byte's GET answers instead.
      if (!(error instanceof HttpRequestError && (error.status === 405 || error.status === 501))) throw error;
      try {
        await this.client.probe(url, 1);
        return true;
      } catch (probeError) {
        if (probeError instanceof NotFoundError) return false;
        throw probeError;
      }
    }
  }

  /**
   * @inheritDoc
   * Under an `hf://` id: the Hub's tree API (`/api/models/{repo}/tree/{revision}/{path}`, every
   * page; files with their LFS size, and folders), when the endpoint has it. Otherwise HTTP has no
   * listing, so the listing is emulated from what a checkpoint names: with a
   * `.metadata`, it and the data files its storage entries name; else with
   * `model.safetensors.index.json`, it, the shards of its `weight_map` and the CRC sidecar when
   * present; else `model.safetensors` when present; else nothing. Sizes come from HEADs
   * (`maxConnections` at once); no folders are listed.
   * @throws {@link MetadataError} for a malformed `.metadata` or index.
   */
  async list(path: string, signal?: AbortSignal): Promise<FileEntry[]> {
    const folder = this.initPath(path);
    const hub = this.client.hubLocation(folder);
    if (hub !== undefined) {
      const tree = await this.#hubTree(hub, signal);
      if (tree !== undefined) return tree;
    }
    const names = await this.#namedFiles(folder, signal);
    const limit = pLimit(this.client.options.maxConnections);
    const entries = await Promise.all(
      names.map((name) =>
        limit(async (): Promise<FileEntry | undefined> => {
          const identity = await this.client.head(this.concatPath(folder, name), signal);
          if (identity === undefined) return undefined;
          const modified = identity.lastModified === undefined ? 0 : Date.parse(identity.lastModified);
          return {
            name,
            folder: false,
            size: identity.size ?? 0,
            modifiedMs: Number.isFinite(modified) ? modified : 0,
          };
        }),
      ),
    );
    return entries.filter((e): e is FileEntry => e !== undefined);
  }

  /** A folder of a Hub repository as its tree API lists it; undefined when the endpoint has no such API (404). */
  async #hubTree(
    hub: NonNullable<ReturnType<HttpClient["hubLocation"]>>,
    signal: AbortSignal | undefined,
  ): Promise<FileEntry[] | undefined> {
    const [kind, id] = hub.repo.startsWith("datasets/")
      ? ["datasets", hub.repo.slice("datasets/".length)]
      : hub.repo.startsWith("spaces/")
        ? ["spaces", hub.repo.slice("spaces/".length)]
        : ["models", hub.repo];
    const prefix = hub.path === "" ? "" : `${decodeURIComponent(hub.path)}/`;
    let next: string | undefined =
      `${hub.endpointBase}/api/${kind}/${id}/tree/${hub.revision}${hub.path === "" ? "" : `/${hub.path}`}`;
    const entries: FileEntry[] = [];
    for (let pages = 0; next !== undefined; pages++) {
      if (pages === MAX_TREE_PAGES)
        throw new MetadataError(
          `Expected the Hub's tree API to list ${hub.repo} in at most ${MAX_TREE_PAGES} pages, got more (at ${next})`,
        );
      const page = await this.client.getText(next, MAX_TREE_PAGE_BYTES, signal);
      if (page === undefined) return entries.length > 0 ? entries : undefined;
      let items: unknown;
      try {
        items = JSON.parse(page.text);
      } catch (cause) {
        throw new MetadataError(`Malformed answer of the Hub's tree API at ${next}: expected JSON`, {
          cause,
        });
      }
      if (!Array.isArray(items))
        throw new MetadataError(`Malformed answer of the Hub's tree API at ${next}: expected an array`);
      for (const item of items as {
        type?: unknown;
        path?: unknown;
        size?: unknown;
        lfs?: { size?: unknown };
      }[]) {
        if (typeof item.path !== "string") continue;
        const size =
          typeof item.lfs?.size === "number" ? item.lfs.size : typeof item.size === "number" ? item.size : 0;
        entries.push({
          name: item.path.startsWith(prefix) ? item.path.slice(prefix.length) : item.path,
          folder: item.type === "directory",
          size: item.type === "directory" ? 0 : size,
          modifiedMs: 0,
        });
      }
      next = nextLink(page.link, next);
    }
    return entries;
  }

  /** The files a checkpoint at `folder` names (see {@link HttpFileSystem.list}). */
  async #namedFiles(folder: string, signal: AbortSignal | undefined): Promise<string[]> {
    const metadata = await this.#readOptional(this.concatPath(folder, METADATA_FILE), signal);
    if (metadata !== undefined) {
      const decoded = decodeCheckpointMetadata(metadata);
      return [METADATA_FILE, ...new Set([...decoded.storageData.values()].map((i) => i.relativePath))];
    }
    const index = await this.#readOptional(this.concatPath(folder, INDEX_FILE), signal);
    if (index !== undefined) {
      let map: unknown;
      try {
        map = (JSON.parse(new TextDecoder().decode(index)) as { weight_map?: unknown }).weight_map;
      } catch (cause) {
        throw new MetadataError(`Malformed ${this.concatPath(folder, INDEX_FILE)}: expected JSON`, { cause });
      }
      if (typeof map !== "object" || map === null)
        throw new MetadataError(`Malformed ${INDEX_FILE}: expected a weight_map object`);
      const shards = [
        ...new Set(Object.values(map).filter((f): f is string => typeof f === "string")),
      ].sort();
      return [INDEX_FILE, ...shards, CHECKSUMS_FILE];
    }
    return [SINGLE_FILE];
  }

  /** A small file's bytes, or undefined when it does not exist. */
  async #readOptional(url: string, signal: AbortSignal | undefined): Promise<Uint8Array | undefined> {
    const stream = this.#reader(url, signal);
    try {
      return await stream.read(0, await stream.size(signal), signal);
    } catch (error) {
      if (error instanceof NotFoundError) return undefined;
      throw error;
    } finally {
      await stream.close();
    }
  }

  /** A read stream over `url`: through the read cache when there is one. */
  #reader(url: string, signal: AbortSignal | undefined, refetch = false): FileReadStream {
    return this.readCache
      ? new HttpCachedReadStream(this.client, url, this.readCache, signal, refetch)
      : new HttpReadStream(this.client, url, signal);
  }

  /** @inheritDoc True for an `http://` or `https://` URL with a host, or a well-formed `hf://` id. */
  validateCheckpointId(checkpointId: string): boolean {
    return isHttpCheckpointId(checkpointId);
  }
}

/** The `rel="next"` target of a `Link` header (the Hub's pagination), resolved against `base`. */
function nextLink(link: string | null, base: string): string | undefined {
  const m = link === null ? null : /<([^>]+)>\s*;\s*rel="?next"?/i.exec(link);
  return m ? new URL(m[1]!, base).href : undefined;
}
