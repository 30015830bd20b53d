// What `copyCheckpoint` copies of a safetensors repository (a folder or a Hub repository without
// `.metadata`): every shard, verified against the CRC-32C sidecar when there is one (else by its
// header and size), the small files a Hub repository holds beside the weights, and — written
// last — the sidecar and `model.safetensors.index.json`, the repository's commit.
import { MetadataError, NotFoundError } from "../errors.js";
import type { CheckpointFolder } from "../formats/checkpoint-format.js";
import { SAFETENSORS_CHECKSUMS_FILE, SAFETENSORS_INDEX_FILE } from "../formats/safetensors/folder-reader.js";
import type { Metadata } from "../plan/metadata.js";
import type { FileItem, FileToCopy } from "./copy-files.js";
import type { Located } from "./locate.js";

/**
 * The small files of a repository copied with its weights (top level only): configuration,
 * tokenizer, generation and chat-template files, model cards and custom code — `.json`, `.txt`,
 * `.model` (SentencePiece), `.tiktoken`, `.jinja`, `.md`, `.py`, `.yaml`/`.yml`. Other weights
 * (`*.bin`, `*.pt`, `*.gguf`, `*.onnx`, safetensors files the index does not name) are not copied.
 */
export const REPOSITORY_FILE_PATTERN = /\.(json|txt|model|tiktoken|jinja|md|py|ya?ml)$/i;

/** A whole file written at the end of a copy, through a tmp name and a rename; the last one is the commit. */
export interface CommitFile {
  readonly name: string;
  readonly bytes: Uint8Array;
}

/** How the copied data files are verified: `checksums` (every item's CRC), `lengths` (some items have none), `headers` (safetensors without a sidecar: each header parsed, each file's size equal to header + data). */
export type CopyVerification = "checksums" | "lengths" | "headers";

/** What a copy writes: its data files, its other files, and the files committed last in order. */
export interface CopyPlan {
  readonly layout: "dcp" | "safetensors";
  /** The data files (DCP's `.distcp` files, safetensors shards). */
  readonly data: FileToCopy[];
  /** Other files copied as they are, before the commit (a repository's config and tokenizer files). */
  readonly extras: FileToCopy[];
  /** Written last, in order; the last is the commit (`.metadata`, the index). */
  readonly commit: CommitFile[];
  readonly verifiedBy: CopyVerification;
  /** An incremental DCP source's bases (names): copied in, or with `keepRefs` still referenced. */
  readonly bases?: readonly string[];
}

/** A file's size (bytes), asked of the source. */
async function sizeOf(from: Located, name: string, signal: AbortSignal | undefined): Promise<number> {
  const stream = await from.fs.createStream(from.fs.concatPath(from.root, name), "rb", { access: "random" });
  try {
    return await stream.size(signal);
  } finally {
    await stream.close();
  }
}

/** Checks the index's weight map against the headers: every tensor it names is in the file it names. */
function checkIndex(bytes: Uint8Array, byFile: ReadonlyMap<string, FileItem[]>): void {
  const map = (JSON.parse(new TextDecoder().decode(bytes)) as { weight_map: Record<string, string> })
    .weight_map;
  const where = new Map<string, Set<string>>();
  for (const [file, items] of byFile)
    for (const { fqn } of items) where.set(fqn, (where.get(fqn) ?? new Set()).add(file));
  for (const [fqn, file] of Object.entries(map)) {
    if (!where.get(fqn)?.has(file))
      throw new MetadataError(
        `Malformed ${SAFETENSORS_INDEX_FILE}: expected ${JSON.stringify(fqn)} in ${file}, as its weight_map says; its header does not hold it`,
      );
  }
}

/**
 * Plans the copy of a safetensors repository whose metadata `readSafetensorsFolder` found (every
 * header parsed, and each file's size checked against header + data): its shards, each tensor an
 * item checked on arrival against the sidecar's CRC-32C when `model.safetensors.crc32c.json` is
 * there (which must then name every tensor), else by length; the repository's small files
 * ({@link REPOSITORY_FILE_PATTERN}) when the source can list them; then the sidecar and, last,
 * `model.safetensors.index.json` — so an interrupted copy leaves no index (a repository without
 * one is committed file by file: each file whole, or cut short and refused by its header's size).
 * No `.metadata` is written.
 *
 * @param from - the source.
 * @param folder - the source folder's view (whole files read once).
 * @param metadata - its metadata, validated.
 * @param signal - aborts the reads.
 * @throws {@link MetadataError} when the sidecar lacks a tensor, or the index names a tensor in a
 * file whose header does not hold it; the backend's errors.
 */
export async function planSafetensorsCopy(
  from: Located,
  folder: CheckpointFolder,
  metadata: Metadata,
  signal: AbortSignal | undefined,
): Promise<CopyPlan> {
  const [index, sidecar] = await Promise.all([
    folder.readFile(SAFETENSORS_INDEX_FILE, { random: true }),
    folder.readFile(SAFETENSORS_CHECKSUMS_FILE, { random: true }),
  ]);
  const byFile = new Map<string, FileItem[]>();
  for (const [key, info] of metadata.storageData) {
    const fqn = key.split("\u0000")[0]!;
    if (sidecar !== undefined && info.crc32c === undefined)
      throw new MetadataError(
        `Expected ${SAFETENSORS_CHECKSUMS_FILE} to hold the CRC-32C of every tensor, got none for ${JSON.stringify(fqn)} in ${info.relativePath}`,
      );
    byFile.set(info.relativePath, [...(byFile.get(info.relativePath) ?? []), { info, fqn }]);
  }
  if (index !== undefined) checkIndex(index, byFile);
  // A file whose header holds no tensor has no item: readSafetensorsFolder listed it, so ask its size.
  const data = await Promise.all(
    [...byFile].map(
      async ([file, items]): Promise<FileToCopy> => ({
        file,
        items,
        size:
          items.length > 0
            ? Math.max(...items.map(({ info }) => info.offset + info.length))
            : await sizeOf(from, file, signal),
        sameHead: true,
      }),
    ),
  );
  const commitNames = new Set([SAFETENSORS_INDEX_FILE, SAFETENSORS_CHECKSUMS_FILE]);
  const listed =
    (await folder.list().catch((error: unknown) => {
      if (error instanceof NotFoundError) return undefined;
      throw error;
    })) ?? [];
  const extraNames = listed.filter(
    (name) => !name.includes("/") && !commitNames.has(name) && REPOSITORY_FILE_PATTERN.test(name),
  );
  const extras = await Promise.all(
    extraNames.map(
      async (file): Promise<FileToCopy> => ({
        file,
        items: [],
        size: await sizeOf(from, file, signal),
        incremental: false,
      }),
    ),
  );
  const commit: CommitFile[] = [];
  if (sidecar !== undefined) commit.push({ name: SAFETENSORS_CHECKSUMS_FILE, bytes: sidecar });
  if (index !== undefined) commit.push({ name: SAFETENSORS_INDEX_FILE, bytes: index });
  return {
    layout: "safetensors",
    data,
    extras,
    commit,
    verifiedBy: sidecar !== undefined ? "checksums" : "headers",
  };
}
