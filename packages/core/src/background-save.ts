import type { StateDict } from "./model/state-dict.js";
import type { Metadata } from "./plan/metadata.js";
import { type SaveOptions, save } from "./save.js";

/**
 * Runs the save of a staged state dict — the part of {@link asyncSave} after `staged`.
 *
 * @param staged - the staged copy (tensors in shared memory).
 * @param options - the save's options.
 * @returns the committed metadata, as {@link save}.
 */
export function saveInBackground(staged: StateDict, options: SaveOptions): Promise<Metadata> {
  return save(staged, options);
}
