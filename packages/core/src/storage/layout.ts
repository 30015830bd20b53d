/**
 * The checkpoint layout: every file name a checkpoint folder holds, in one place, for the writer,
 * the reader, the backends' prefix strategies and the operations (`dcp ls`, `gc`, `cp`).
 *
 * ```
 * .metadata                          the commit marker: written last, atomically
 * .metadata.{saveTag}.tmp            a save's metadata before its rename over .metadata
 * __{rank}.metadata                  per-rank metadata (PyTorch's use_collectives=False)
 * {prefix}{n}.{saveTag}.distcp       data files; prefix `__{rank}_` (S3 strategies add folders)
 * __{rank}_{n}.distcp                data files as PyTorch DCP names them (read, never written)
 * .save.{saveTag}.lease              a save in flight: written before its first data file, renewed
 *                                    while it writes, removed at its commit or failure (gc honours it)
 * ```
 */

/** Name of the committed metadata file in a checkpoint folder, as DCP's `.metadata`. */
export const METADATA_FILE = ".metadata";

/** Suffix of data files, as DCP's `DEFAULT_SUFFIX`. */
export const DATA_FILE_SUFFIX = ".distcp";

/**
 * Name a save writes its metadata under before the atomic rename to {@link METADATA_FILE}: one
 * per save, so concurrent saves to one id never share it.
 *
 * @param saveTag - the save's tag, as in its data file names.
 */
export function metadataTmpFile(saveTag: string): string {
  return `.metadata.${saveTag}.tmp`;
}

/**
 * The metadata file of one rank of a save without rank coordination, as PyTorch's
 * `use_collectives=False` writes (`__{rank}.metadata`).
 * @param rank - the rank.
 */
export function rankMetadataFile(rank: number): string {
  return `__${rank}${METADATA_FILE}`;
}

/**
 * The default data file prefix of a rank, as DCP's `__{rank}_`.
 * @param rank - the rank.
 */
export function rankFilePrefix(rank: number): string {
  return `__${rank}_`;
}

/**
 * A data file's name relative to the checkpoint.
 * @param prefix - the rank's prefix (see {@link rankFilePrefix}), perhaps under folders.
 * @param n - the file's number within the rank.
 * @param saveTag - the save's tag.
 */
export function dataFileName(prefix: string, n: number, saveTag: string): string {
  return `${prefix}${n}.${saveTag}${DATA_FILE_SUFFIX}`;
}

/**
 * The suffix every data file of one save ends with (`.{saveTag}.distcp`).
 * @param saveTag - the save's tag.
 */
export function saveTagSuffix(saveTag: string): string {
  return `.${saveTag}${DATA_FILE_SUFFIX}`;
}

/**
 * Whether a name (perhaps under prefix folders) is a data file: dcpjs's (`__{rank}_{n}.{saveTag}.distcp`)
 * or PyTorch's (`__{rank}_{n}.distcp`).
 * @param name - a file name relative to the checkpoint.
 */
export function isDataFile(name: string): boolean {
  return /(^|\/)__\d+_\d+(\.[0-9a-f]{12})?\.distcp$/.test(name);
}

/**
 * Whether a name is a save's metadata before its commit (`.metadata.{tag}.tmp`, per rank too).
 * @param name - a file name relative to the checkpoint.
 */
export function isMetadataTmpFile(name: string): boolean {
  return /^(__\d+)?\.metadata(\.[\w-]+)?\.tmp$/.test(name);
}

/**
 * How often a save renews its lease while it writes its data files (ms): the lease file is
 * written again, so its modification time moves on.
 */
export const SAVE_LEASE_RENEW_MS = 30_000;

/**
 * How long a save lease stays live without being renewed (ms): gc keeps every file of a save
 * whose lease was written or renewed less than this long ago, whatever its grace period; an older
 * lease is a save that died (killed, or its process stopped), and its files and the lease are
 * collected as any leftover. One hour: a lease is renewed while its rank writes, not while it
 * waits for slower ranks and the commit, so this bounds that wait.
 */
export const SAVE_LEASE_EXPIRY_MS = 3_600_000;

/**
 * The lease a save in flight keeps in the checkpoint folder (`.save.{saveTag}.lease`): written
 * before its first data file, renewed every {@link SAVE_LEASE_RENEW_MS} while the rank writes, and
 * removed once the save commits or fails. gc never removes a file of a save whose lease is live.
 *
 * @param saveTag - the save's tag, as in its data file names.
 */
export function saveLeaseFile(saveTag: string): string {
  return `.save.${saveTag}.lease`;
}

/**
 * Whether a name is a save lease (`.save.{saveTag}.lease`, see {@link saveLeaseFile}).
 * @param name - a file name relative to the checkpoint (a lease lies at its top).
 */
export function isSaveLeaseFile(name: string): boolean {
  return /^\.save\.[0-9a-f]{12}\.lease$/.test(name);
}

/**
 * The save tag in a file name of one save: a data file (`…{n}.{saveTag}.distcp`), a metadata tmp
 * (`.metadata.{saveTag}.tmp`) or a lease (`.save.{saveTag}.lease`); undefined for other names
 * (PyTorch's untagged data files, `.metadata`).
 *
 * @param name - a name relative to the checkpoint, perhaps under prefix folders.
 */
export function saveTagOf(name: string): string | undefined {
  return /(?:^|\/)(?:__\d+_\d+\.([0-9a-f]{12})\.distcp|(?:__\d+)?\.metadata\.([0-9a-f]{12})\.tmp|\.save\.([0-9a-f]{12})\.lease)$/
    .exec(name)
    ?.slice(1)
    .find((t) => t !== undefined);
}
