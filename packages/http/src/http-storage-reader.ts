import { CheckpointError, FileSystemReader, type ProgressCallback } from "@dcpjs/core";
import type { ReadCache } from "@dcpjs/core/extend";
import { isHttpCheckpointId } from "./hf-url.js";
import { HttpFileSystem } from "./http-file-system.js";
import type { HttpOptions } from "./http-options.js";

/** Options of {@link HttpStorageReader}. */
export type HttpStorageReaderOptions = {
  /** The checkpoint: an `http(s)://` URL of its folder, or `hf://org/repo[@rev][/sub]`. */
  readonly url: string;
  /** Data files read concurrently by each rank. @default 4 */
  readonly threadCount?: number;
  /** Called after each item is read and verified. */
  readonly onProgress?: ProgressCallback;
} & HttpOptions;

/**
 * Loads checkpoints over HTTP(S) and from the Hugging Face Hub, as DCP's `FsspecReader` over
 * fsspec's HTTP file system: core's `FileSystemReader` over an {@link HttpFileSystem}. A DCP
 * checkpoint (`.metadata`, or PyTorch's per-rank `__N.metadata`), a sharded safetensors
 * repository (`model.safetensors.index.json`) or a single `model.safetensors` is found without a
 * listing; every data file is read with ranged GETs planned by core's read scheduler.
 */
export class HttpStorageReader extends FileSystemReader {
  /**
   * @param options - see {@link HttpStorageReaderOptions}.
   * @throws {@link CheckpointError} `INVALID_ARGUMENT` for a URL that is not `http(s)://` or
   * `hf://`, or an option out of range.
   */
  constructor(options: HttpStorageReaderOptions) {
    const { url, threadCount, onProgress, ...http } = options;
    assertHttpCheckpointId(url);
    super({
      path: url,
      fs: new HttpFileSystem(http),
      ...(threadCount !== undefined ? { threadCount } : {}),
      ...(onProgress ? { onProgress } : {}),
    });
  }

  /** The machine-local read cache (`cacheDir`), if any. */
  get readCache(): ReadCache | undefined {
    return (this.fs as HttpFileSystem).readCache;
  }

  /**
   * @inheritDoc
   * Validates `http(s)://` and `hf://` ids only. With an id (a new load of a checkpoint), every
   * pinned identity and Hub commit is forgotten, so a newer version is read; without one (the
   * batches of one conversion or export), they stay pinned, so the batches read one version.
   */
  override reset(checkpointId?: string): void {
    if (checkpointId !== undefined) {
      assertHttpCheckpointId(checkpointId);
      (this.fs as HttpFileSystem).client.forget();
    }
    super.reset(checkpointId);
  }

  /**
   * Whether a checkpoint id is one this reader takes.
   * @param checkpointId - the id.
   */
  static validateCheckpointId(checkpointId: string): boolean {
    return isHttpCheckpointId(checkpointId);
  }
}

function assertHttpCheckpointId(id: string): void {
  if (!isHttpCheckpointId(id)) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected an http(s)://HOST/PATH URL or hf://ORG/REPO[@REVISION][/SUBFOLDER], got ${JSON.stringify(id)}`,
    );
  }
}
