import { CheckpointError, MetadataError } from "../errors.js";
import { decodeGuarded } from "../model/decode-budget.js";
import type { Metadata } from "../plan/metadata.js";
import type { CheckpointFormat } from "./checkpoint-format.js";
import { DCPJS_CHECKPOINT_FORMAT } from "./dcpjs-checkpoint-format.js";
import type { ItemFormat } from "./item-format.js";
import { itemFormatNamed } from "./item-formats.js";
import { encodeMetadata } from "./metadata-codec.js";
import { SAFETENSORS_CHECKPOINT_FORMAT } from "./safetensors/safetensors-format.js";
import { TORCH_CHECKPOINT_FORMAT } from "./torch/torch-checkpoint-format.js";
import { validateMetadata } from "./validate-metadata.js";

/**
 * The checkpoint formats in the order they are asked: formats registered later first, then the
 * built-ins — PyTorch DCP's (its pickle magic), dcpjs's (every other `.metadata`), safetensors.
 */
const formats: CheckpointFormat[] = [
  TORCH_CHECKPOINT_FORMAT,
  DCPJS_CHECKPOINT_FORMAT,
  SAFETENSORS_CHECKPOINT_FORMAT,
];

/**
 * Registers a whole checkpoint format (see {@link CheckpointFormat}): one of the same name is
 * replaced where it stands; a new one is asked before those registered earlier, so that it may
 * claim a `.metadata` by its magic before dcpjs's format reads every `.metadata` left. Register
 * its item format with `registerItemFormat` too.
 * @param format - the format.
 */
export function registerCheckpointFormat(format: CheckpointFormat): void {
  const at = formats.findIndex((f) => f.name === format.name);
  if (at >= 0) formats[at] = format;
  else formats.unshift(format);
}

/** The registered checkpoint formats, in the order `readCheckpointMetadata` asks them. */
export function checkpointFormats(): readonly CheckpointFormat[] {
  return [...formats];
}

/**
 * The registered checkpoint format called `name`, or undefined.
 * @param name - e.g. `dcpjs`, `torch`, `safetensors`.
 */
export function findCheckpointFormat(name: string): CheckpointFormat | undefined {
  return formats.find((f) => f.name === name);
}

/**
 * The registered checkpoint format called `name`.
 * @param name - e.g. `dcpjs`, `torch`, `safetensors`.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when none is registered under it.
 */
export function checkpointFormatNamed(name: string): CheckpointFormat {
  const format = findCheckpointFormat(name);
  if (!format)
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected a checkpoint format, one of ${formats.map((f) => f.name).join(", ")}, got ${JSON.stringify(name)}`,
    );
  return format;
}

/**
 * Decodes a committed `.metadata` with the first registered format that recognizes it (by its
 * own magic: no byte is looked at here), and checks it with `validateMetadata`.
 *
 * @param bytes - the file's bytes.
 * @returns the metadata and the format that read it.
 * @throws {@link MetadataError} `MALFORMED_METADATA` (or `UNSAFE_PATH`) as the format's decoder
 * and `validateMetadata`, or when no registered format reads it.
 */
export function decodeCommittedMetadata(bytes: Uint8Array): { metadata: Metadata; format: CheckpointFormat } {
  for (const format of formats) {
    if (!format.decodeMetadata || !(format.recognizes?.(bytes) ?? true)) continue;
    const what = format.what ?? ".metadata";
    const metadata = decodeGuarded(what, () => validateMetadata(format.decodeMetadata!(bytes), { what }));
    return { metadata, format };
  }
  throw new MetadataError(
    `Malformed .metadata: expected a file one of the registered checkpoint formats reads (${formats.map((f) => f.name).join(", ")}), found none that does`,
  );
}

/** How `FileSystemWriter` writes a checkpoint of one format: its items' framing and its `.metadata` encoding. */
export interface WriteFormat {
  /** Frames the items. */
  readonly itemFormat: ItemFormat;
  /** Encodes the committed `.metadata`. */
  encodeMetadata(metadata: Metadata): Uint8Array;
}

/**
 * What `FileSystemWriter`'s `format` option names: a registered checkpoint format that encodes
 * its `.metadata` (its item format frames the items), else — for an item format registered on
 * its own — that item format in dcpjs's checkpoint format (its `.metadata` records the item
 * format's name per item).
 *
 * @param name - e.g. `dcpjs`, `torch`, or a registered format's name.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when neither is registered under `name`.
 */
export function writeFormatNamed(name: string): WriteFormat {
  const format = findCheckpointFormat(name);
  if (format?.encodeMetadata)
    return { itemFormat: itemFormatNamed(format.itemFormat), encodeMetadata: format.encodeMetadata };
  const itemFormat = itemFormatNamed(name);
  return { itemFormat, encodeMetadata: itemFormat.encodeMetadata ?? encodeMetadata };
}
