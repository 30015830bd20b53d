// Where a load finds a referenced item's bytes: an incremental checkpoint's item that references
// its base (`StorageInfo.baseCheckpoint`) lies in the sibling checkpoint's folder. The read stages
// carry it as the data file `../{base}/{file}` (what messages show), resolved here when opened.
import type { StorageInfo } from "../plan/metadata.js";
import { siblingCheckpointId } from "./references.js";

/** How a referenced data file's path begins, relative to the checkpoint read. */
const UP = "../";

/**
 * The data file of a storage entry as the read stages name it, relative to the checkpoint read:
 * its `relativePath`, or `../{baseCheckpoint}/{relativePath}` for a reference to a sibling
 * checkpoint's file (the scheduler groups reads by it; messages show it).
 *
 * @param info - the storage entry.
 */
export function dataFileOf(info: StorageInfo): string {
  return info.baseCheckpoint === undefined
    ? info.relativePath
    : `${UP}${info.baseCheckpoint}/${info.relativePath}`;
}

/**
 * The checkpoint a data file named by {@link dataFileOf} lies in, and its path there.
 *
 * @param checkpointPath - the checkpoint read (normalised).
 * @param dataFile - the data file as {@link dataFileOf} names it.
 * @returns `checkpoint` (the folder or prefix the file must lie in) and `file` (relative to it);
 * `base`, the sibling's name, for a reference.
 */
export function resolveDataFile(
  checkpointPath: string,
  dataFile: string,
): { readonly checkpoint: string; readonly file: string; readonly base?: string } {
  if (!dataFile.startsWith(UP)) return { checkpoint: checkpointPath, file: dataFile };
  const cut = dataFile.indexOf("/", UP.length);
  const base = dataFile.slice(UP.length, cut);
  return { checkpoint: siblingCheckpointId(checkpointPath, base), file: dataFile.slice(cut + 1), base };
}
