import { CheckpointError, MetadataError } from "../errors.js";
import type { StorageInfo } from "../plan/metadata.js";
import type { ItemFormat } from "./item-format.js";
import { NATIVE_ITEM_FORMAT } from "./native-item-format.js";
import { TORCH_ITEM_FORMAT } from "./torch/torch-item-format.js";

/** The item formats by name: dcpjs's and PyTorch's built in, others registered. */
const formats = new Map<string, ItemFormat>([
  [NATIVE_ITEM_FORMAT.name, NATIVE_ITEM_FORMAT],
  [TORCH_ITEM_FORMAT.name, TORCH_ITEM_FORMAT],
]);

/**
 * Registers an item format by its name (replacing one of the same name), for writers that name
 * it and for reading items whose storage entry names it.
 * @param format - see {@link ItemFormat}.
 */
export function registerItemFormat(format: ItemFormat): void {
  formats.set(format.name, format);
}

/**
 * The registered item format called `name`.
 * @param name - e.g. `dcpjs` or `torch`.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when none is registered under it.
 */
export function itemFormatNamed(name: string): ItemFormat {
  const format = formats.get(name);
  if (!format)
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected format to be one of ${[...formats.keys()].join(", ")}, got ${JSON.stringify(name)}`,
    );
  return format;
}

/**
 * The format of a stored item: the one its storage entry names, else dcpjs's own.
 * @param info - the storage entry.
 * @throws {@link MetadataError} for a format nobody registered.
 */
export function itemFormatOf(info: StorageInfo): ItemFormat {
  const format = formats.get(info.itemFormat ?? "dcpjs");
  if (!format)
    throw new MetadataError(`Malformed .metadata: unknown item format ${JSON.stringify(info.itemFormat)}`);
  return format;
}
